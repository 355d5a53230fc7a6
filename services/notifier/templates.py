"""Rendering notices into messages: pure functions, one per kind of notice."""

from __future__ import annotations

from datetime import UTC

from services.notifier.channels.base import HANDOVER, ActionLink, Message
from shared.events import Escalation, HandoverDigest, MovedTicket, Ticket, TicketEvent


def _ticket_lines(ticket: Ticket, public_url: str) -> list[str]:
    lines = [
        f"Ticket:    {ticket.ticket_id}",
        f"Summary:   {ticket.summary}",
        f"Priority:  {ticket.priority} ({ticket.severity.value})",
        f"Owner:     {ticket.person + ' (' + ticket.team + ')' if ticket.person else ticket.team}",
        f"State:     {ticket.state.value}",
        f"Source:    {ticket.source} ({ticket.kind.value})",
        f"Opened:    {ticket.opened_at.isoformat()}",
    ]
    if ticket.watchers:
        lines.append("Watchers:  " + ", ".join(ticket.watchers))
    if ticket.alerts > 1:
        lines.append(f"Alerts:    {ticket.alerts} grouped, {ticket.alerts_firing} firing")
    if ticket.occurrences > 1:
        lines.append(f"Seen:      {ticket.occurrences} times, last {ticket.last_seen.isoformat()}")
    if ticket.labels:
        lines.append("Labels:    " + ", ".join(f"{k}={v}" for k, v in sorted(ticket.labels.items())))
    if ticket.last_action:  # where a chat message cannot be redrawn, the next one says who acted
        lines.append(f"Last:      {ticket.last_action}")
    base = public_url.rstrip("/")
    lines += ["", f"API:       {base}/api/v1/tickets/{ticket.ticket_id}"]
    return lines


def _data(ticket: Ticket, **extra: object) -> dict[str, object]:
    return {
        "ticket_id": ticket.ticket_id,
        "summary": ticket.summary,
        "priority": ticket.priority,
        "team": ticket.team,
        "state": ticket.state.value,
        **extra,
    }


def who_acted(event: TicketEvent) -> str:
    """The actor as people read it: with the API client that acted for them, when one did."""
    return event.actor if event.via is None else f"{event.actor} (via {event.via})"


def render_assignment(event: TicketEvent, public_url: str) -> Message:
    t = event.ticket
    headline = {
        "reassigned": f"A {t.kind.value} ticket was reassigned to {t.team} by {who_acted(event)}.",
        "reopened": f"A {t.kind.value} ticket was reopened (reopened {t.reopened} time(s)).",
    }.get(event.change.value, f"A new {t.kind.value} ticket is assigned to {t.team}.")
    similar = ["", "Similar resolved tickets:", *(f"  {line}" for line in event.similar)] if event.similar else []
    text = "\n".join([headline, f"Why: {event.reason}", *similar, "", *_ticket_lines(t, public_url)])
    verb = {"reassigned": "Reassigned", "reopened": "Reopened"}.get(event.change.value, "New")
    subject = f"[{t.priority}] {verb} ticket {t.ticket_id}: {t.summary}"
    return Message("assignment", subject, text, _data(t, reason=event.reason))


def render_update(event: TicketEvent, public_url: str) -> Message:
    """More alerts joined a ticket people were already told about (at most once per group_interval)."""
    t = event.ticket
    text = "\n".join([f"Update: {event.reason}.", "", *_ticket_lines(t, public_url)])
    subject = f"[{t.priority}] {t.alerts} alerts on {t.ticket_id}: {t.summary}"
    return Message("update", subject, text, _data(t, alerts=t.alerts, alerts_firing=t.alerts_firing))


def render_resolution(event: TicketEvent, public_url: str) -> Message:
    t = event.ticket
    why = event.reason or "resolved"
    text = "\n".join([f"Resolved by {who_acted(event)}: {why}", "", *_ticket_lines(t, public_url)])
    return Message(
        "resolution", f"[{t.priority}] Resolved {t.ticket_id}: {t.summary}", text, _data(t, actor=event.actor)
    )


def render_escalation(escalation: Escalation, public_url: str) -> Message:
    t = escalation.ticket
    data = _data(
        t, level=escalation.level, target_team=escalation.target_team, deadline=escalation.deadline.isoformat()
    )
    if escalation.kind == "warning":
        by = escalation.deadline.isoformat()
        todo = {
            "resolve": f"Resolve by {by} to meet the resolve target.",
            "first_response": f"Respond to the reporter by {by} to meet the first response target.",
            "update": f"Update the customer by {by} to keep to the update interval.",
        }.get(escalation.clock, f"Acknowledge by {by} to avoid an escalation.")
        text = "\n".join([f"WARNING: {escalation.reason}", todo, "", *_ticket_lines(t, public_url)])
        return Message("warning", f"[{t.priority}] WARNING {t.ticket_id}: {t.summary}", text, data)
    if escalation.kind == "breach":  # an acknowledge breach is not sent (services.notifier.pipeline.notifies)
        text = "\n".join([f"SLA BREACHED: {escalation.reason}", "", *_ticket_lines(t, public_url)])
        return Message("breach", f"[{t.priority}] SLA BREACHED {t.ticket_id}: {t.summary}", text, data)
    text = "\n".join(
        [
            f"ESCALATION level {escalation.level} to {escalation.target_team}"
            f"{' (team lead)' if escalation.to_lead else ''}: {escalation.reason}",
            f"Acknowledge deadline was {escalation.deadline.isoformat()}.",
            "",
            *_ticket_lines(t, public_url),
        ]
    )
    return Message(
        "escalation", f"[{t.priority}] ESCALATION L{escalation.level} {t.ticket_id}: {t.summary}", text, data
    )


def render_handover(digest: HandoverDigest, public_url: str) -> Message:
    """The one message both teams get when a project's hypercare ends: what moved to operations, what had not
    moved yet, and the handover package in force with what it still lacks."""
    base = public_url.rstrip("/")
    n = len(digest.moved) + digest.moved_unlisted
    headline = (
        f"Hypercare of project {digest.project} ({digest.customer}) ended "
        f"{digest.ended_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC: "
        f"{digest.operations} owns its tickets now, {digest.implementation} is the next escalation level."
    )

    def line(t: MovedTicket) -> str:
        moved = f" — {t.moved}" if t.moved else ""
        return f"  [{t.priority}] {t.summary} ({t.state}){moved}\n    {base}/api/v1/tickets/{t.ticket_id}"

    tickets = f"{n} ticket{'' if n == 1 else 's'}"
    lines = [headline, "", f"Moved to {digest.operations}: {tickets}"]
    lines += [line(t) for t in digest.moved] or ["  (no open tickets)"]
    if digest.moved_unlisted:
        lines.append(f"  ... and {digest.moved_unlisted} more ({base}/api/v1/tickets?team={digest.operations})")
    if digest.not_moved:
        waiting = len(digest.not_moved) + digest.not_moved_unlisted
        lines += ["", f"Not moved yet (they follow when the router reaches them): {waiting}"]
        lines += [line(t) for t in digest.not_moved]
        if digest.not_moved_unlisted:
            lines.append(f"  ... and {digest.not_moved_unlisted} more")
    if digest.package:
        lacks = ", ".join(digest.package_lacks)
        lines += ["", f"Handover package: {digest.package}" + (f"; it still lacks {lacks}" if lacks else ", complete")]
    else:
        lines += ["", "Handover package: none imported (ticketloop handover import)"]
    subject = f"Handover: project {digest.project} ({digest.customer}), {tickets} to {digest.operations}"
    data: dict[str, object] = {
        "project": digest.project,
        "customer": digest.customer,
        "moved": [t.ticket_id for t in digest.moved],
        "not_moved": [t.ticket_id for t in digest.not_moved],
    }
    return Message(HANDOVER, subject, "\n".join(lines), data)


_HOW = ("), from handover package ", "), matched keyword ", "), matched its labels", "), suggested by similarity ")
"""Where the timeline's account of a match (services/router/lifecycle.py ``with_known_issue``) follows the title."""


def for_reporter(workaround: str) -> str:
    """What the reporter reads of a known issue's suggestion: its title and workaround, without how it matched
    (the keyword, the similarity scores, the package version: those are for the timeline)."""
    head, sep, text = workaround.partition(". Workaround: ")
    if not sep or not head.startswith("known issue ") or " (" not in head:
        return workaround
    cuts = [i for i in (head.find(marker) for marker in _HOW) if i > 0]
    head = head[: min(cuts) + 1] if cuts else head
    title = head.partition(" (")[2].removesuffix(")")
    return f"{title}\nWorkaround: {text}"


def render_workaround(event: TicketEvent, public_url: str) -> Message:
    """The first response to a reporter whose feedback matches a known issue: the workaround, at once, as what it
    is, an automatic suggestion (it may have matched by the meaning of the report, see services/router/knowledge.py)
    that a person still follows up."""
    t = event.ticket
    text = "\n".join(
        [
            "Thank you for your report. It looks like an issue we already know about, so here is a suggestion "
            "that may help right away:",
            "",
            for_reporter(event.workaround or ""),
            "",
            "This suggestion was picked automatically from your description and may not fit your case; "
            "nothing changes on your side if it does not help. Tell us with one click below whether it did: "
            "it helps us answer the next report better.",
            f"Your report is tracked as {t.ticket_id}; the {t.team} team owns it and will follow up.",
            f"Status: {public_url.rstrip('/')}/api/v1/tickets/{t.ticket_id}",
        ]
    )
    return Message("workaround", f"Re: {t.summary} [{t.ticket_id}]", text, _data(t, known_issue=t.known_issue))


STATE_HEADLINES = {
    "acknowledged": "Acknowledged by {actor}",
    "unacknowledged": "Acknowledgement taken back by {actor}",
    "snoozed": "Snoozed by {actor}",
    "reassigned": "Reassigned by {actor} to {owner}",
    "resolved": "Resolved by {actor}",
    "closed": "Closed by {actor}",
}


def render_state(event: TicketEvent, public_url: str) -> Message:
    """The ticket's message as it should read now that someone acted on it (a chat message redrawn in place)."""
    t = event.ticket
    owner = f"{t.person} ({t.team})" if t.person else t.team
    headline = STATE_HEADLINES.get(event.change.value, "{actor} changed it").format(actor=who_acted(event), owner=owner)
    if event.change.value == "snoozed" and t.snoozed_until is not None:
        headline += f" until {t.snoozed_until.isoformat()}"
    why = f" ({event.reason})" if event.reason else ""
    text = "\n".join([f"{headline}{why}.", "", *_ticket_lines(t, public_url)])
    subject = f"[{t.priority}] {headline.split(' by ')[0]} {t.ticket_id}: {t.summary}"
    return Message("state", subject, text, _data(t, actor=event.actor, change=event.change.value))


SURVEY_LABELS = {
    5: "5 - very satisfied / 非常满意",
    4: "4 - satisfied / 满意",
    3: "3 - neutral / 一般",
    2: "2 - dissatisfied / 不满意",
    1: "1 - very dissatisfied / 非常不满意",
}


def render_survey(event: TicketEvent, links: dict[int, str], closes: str) -> Message:
    """The satisfaction survey mailed to the reporter of a resolved report, in English and Chinese: one link per
    score (each opens the survey page with it chosen; a comment can be added there)."""
    t = event.ticket
    text = "\n".join(
        [
            f"Your report {t.ticket_id} ({t.summary}) has been resolved. How satisfied are you with how we handled it?",
            f"您反馈的问题 {t.ticket_id}（{t.summary}）已处理完毕。您对我们的处理满意吗？",
            "",
            "Choose one (you can add a comment and change your answer until the survey closes):",
            "请选择（提交前可以填写意见，问卷关闭前可以修改）：",
            f"The survey closes {closes} / 问卷截止时间 {closes}.",
        ]
    )
    actions = tuple(ActionLink("survey", SURVEY_LABELS[score], links[score]) for score in sorted(links, reverse=True))
    subject = f"How did we do? / 服务满意度调查 [{t.ticket_id}]"
    return Message("survey", subject, text, _data(t), actions=actions)
