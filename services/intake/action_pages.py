"""What one-click action links show and say (pure): the HTML pages of /act/... and the Slack redraw.

Pages are plain HTML5 without JavaScript (a phone, a mail client's browser); everything that comes from a ticket
or a link is escaped. Slack text is mrkdwn, with ``&``, ``<`` and ``>`` escaped as Slack asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any, Literal

from starlette.responses import HTMLResponse

from shared.events import Action
from shared.infra.actionlinks import LinkAction, LinkClaims, RefusalReason
from shared.store import db

Result = Literal[
    "acted",
    "confirmed_page",
    "already_used",
    "expired",
    "forged",
    "malformed",
    "unknown_ticket",
    "not_allowed",
    "unavailable",
]
Refused = RefusalReason | Literal["unknown_ticket", "not_allowed"]
"""The outcomes answered with a 403 page (and told in Slack as such)."""


@dataclass(frozen=True, slots=True)
class LinkVerb:
    action: Action
    label: str
    """the button"""
    done: str
    """the result: "<done> by <person>" """
    does: str
    """what pressing the button does; ``{person}`` is the link's person"""


VERBS: dict[LinkAction, LinkVerb] = {
    "ack": LinkVerb(Action.acknowledge, "Acknowledge", "Acknowledged", "acknowledge the ticket as {person}"),
    "resolve": LinkVerb(Action.resolve, "Resolve", "Resolved", "mark the ticket resolved, as {person}"),
    "snooze": LinkVerb(
        Action.snooze, "Snooze 1 hour", "Snoozed for 1 hour", "snooze the ticket for 1 hour, as {person}"
    ),
    "take": LinkVerb(Action.reassign, "Take it", "Taken", "make {person} the ticket's owner (the team stays)"),
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one use of a link came to, with what the pages and Slack show about it."""

    result: Result
    claims: LinkClaims | None = None
    ticket: db.TicketRow | None = None
    use: db.ActionLinkUseRow | None = None


HTML_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the address holds the token
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


def html(body: str, status: int = 200, **extra: str) -> HTMLResponse:
    """A page of these links (actions, survey, solved) with the headers every one of them carries."""
    return HTMLResponse(body, status_code=status, headers={**HTML_HEADERS, **extra})


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:0;padding:1rem;line-height:1.4;color:#222;background:#fafafa}"
    "main{max-width:32rem;margin:0 auto;background:#fff;padding:1rem 1.25rem;border-radius:8px;"
    "box-shadow:0 1px 3px #0002;overflow-wrap:anywhere}.nb{display:inline-block}"
    "h1{font-size:1.3rem;margin:.2rem 0 .8rem}.summary{font-size:1.1rem;font-weight:600}"
    "dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem}dt{color:#666}dd{margin:0}"
    "button{font-size:1.1rem;padding:.7rem 1.4rem;border:0;border-radius:6px;background:#1a5fb4;color:#fff;"
    "width:100%}.note{color:#666;font-size:.9rem}"
)


def page(title: str, body: str) -> str:
    """A whole HTML5 document; ``body`` is already escaped HTML."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="robots" content="noindex">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{escape(title)} · ticketloop</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def _when(at: datetime | None) -> str:
    at = db.as_utc(at)
    return at.strftime("%Y-%m-%d %H:%M UTC") if at is not None else "unknown"


def _kept(text: str) -> str:
    """``text`` escaped, on one line where it fits: a phone otherwise breaks ``tl-1f..`` or a date at a hyphen."""
    return f'<span class="nb">{escape(text)}</span>'


def owner_of(ticket: db.TicketRow) -> str:
    return f"{ticket.person} (team {ticket.team})" if ticket.person else f"nobody yet (team {ticket.team})"


def _details(ticket: db.TicketRow, state_label: str = "State") -> str:
    rows = (
        ("Ticket", ticket.ticket_id),
        (state_label, ticket.state),
        ("Owner", owner_of(ticket)),
        ("Priority", ticket.priority),
    )
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows)
    return f'<p class="summary">{escape(ticket.summary)}</p>\n<dl>{items}</dl>'


def _button(label: str) -> str:
    # no action attribute: the form posts to this page's own address (the link)
    return f'<form method="post"><button type="submit">{escape(label)}</button></form>'


def confirm_page(claims: LinkClaims, ticket: db.TicketRow) -> str:
    verb = VERBS[claims.action]
    does = verb.does.format(person=claims.person)
    return page(
        f"{verb.label} {ticket.ticket_id}?",
        f"<h1>{escape(verb.label)} {_kept(ticket.ticket_id + '?')}</h1>\n{_details(ticket)}\n"
        f"<p>The button will {escape(does)}.</p>\n{_button(verb.label)}\n"
        f'<p class="note">This link works once and expires {_kept(_when(claims.expires_at) + ".")}</p>',
    )


def result_page(claims: LinkClaims, ticket: db.TicketRow) -> str:
    verb = VERBS[claims.action]
    return page(
        f"{verb.done} {ticket.ticket_id}",
        f"<h1>{escape(verb.done)} by {escape(claims.person)}</h1>\n{_details(ticket, 'State before')}\n"
        '<p class="note">ticketloop applies the change in a moment; the notifications that follow show it.</p>',
    )


def used_page(claims: LinkClaims, ticket: db.TicketRow, use: db.ActionLinkUseRow | None) -> str:
    if use is not None and use.used_at is None:
        title, note = (
            "This link is being used right now",
            escape("Reload this page in a few seconds to see the result."),
        )
    else:
        when = f"at {_kept(_when(use.used_at))}" if use is not None else "before"
        does = VERBS[claims.action].does.format(person=claims.person)
        title, note = "This link was already used", f"It was used {when} to {escape(does)}; a link acts only once."
    return page(
        title,
        f"<h1>{escape(title)}</h1>\n<p>{note} Nothing was done now.</p>\n{_details(ticket, 'State now')}",
    )


REFUSALS: dict[Refused, str] = {
    "expired": "This link has expired; open the ticket {ticket} in ticketloop or use a newer notification to act "
    "on it.",
    "forged": "This link is not valid: its signature does not match. Use the link exactly as the notification sent it.",
    "malformed": "This link is not valid: it is incomplete or damaged. Copy the whole link from the notification.",
    "unknown_ticket": "This link is for the ticket {ticket}, which does not exist.",
    "not_allowed": "This link is for someone whose role in teams.yaml is viewer: viewers are told about the ticket "
    "{ticket}, but acting on it needs the role responder. Nothing was changed.",
}


def refused_page(reason: Refused, claims: LinkClaims | None) -> str:
    ticket = _kept(claims.ticket_id) if claims is not None else "it was for"
    title = "This link has expired" if reason == "expired" else "This link cannot be used"
    return page(title, f"<h1>{escape(title)}</h1>\n<p>{escape(REFUSALS[reason]).format(ticket=ticket)}</p>")


def unavailable_page(claims: LinkClaims | None, *, with_button: bool) -> str:
    title = "ticketloop cannot act right now"
    retry = _button(f"Try again: {VERBS[claims.action].label}") if with_button and claims is not None else ""
    return page(
        title,
        f"<h1>{escape(title)}</h1>\n<p>Its event broker or database is unavailable. Nothing was changed; "
        f"try again in a minute.</p>\n{retry}",
    )


def not_configured_page() -> str:
    return page("Not configured", "<h1>Action links are not configured</h1>\n<p>Ask your ticketloop operators.</p>")


def slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_line(outcome: Outcome, user: str) -> str:
    """One line of mrkdwn about ``outcome``, for the message the button was in."""
    c, t = outcome.claims, outcome.ticket
    about = f"{t.ticket_id}: {t.summary}" if t is not None else (c.ticket_id if c is not None else "")
    if outcome.result == "acted" and c is not None:
        who = slack_escape(f"{c.person} (via Slack, @{user}) — {about}")
        return f"*{VERBS[c.action].done}* by {who}"
    if outcome.result == "already_used" and c is not None:
        state = f" (now {t.state})" if t is not None else ""
        return f"*{VERBS[c.action].label}*: this button was already used{state} — {slack_escape(about)}"
    if outcome.result == "unavailable":
        return "ticketloop cannot act right now (its event broker or database is unavailable); try again in a minute."
    if outcome.result in ("expired", "forged", "malformed", "unknown_ticket", "not_allowed"):
        text = REFUSALS[outcome.result].format(ticket=c.ticket_id if c is not None else "it was for")
        return slack_escape(text)
    return slack_escape(about)


def slack_redraw(outcomes: list[Outcome], user: str) -> dict[str, Any]:
    """The body to POST to ``response_url``: the message redrawn when a button acted (or had acted), else a note
    only the clicking user sees, leaving the buttons in place to try again."""
    text = "\n".join(slack_line(o, user) for o in outcomes) or "Nothing to do."
    replace = any(o.result in ("acted", "already_used") for o in outcomes)
    body: dict[str, Any] = {
        "replace_original": replace,
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    }
    if not replace:
        body["response_type"] = "ephemeral"
    return body
