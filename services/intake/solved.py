"""The reporter's "this solved it / it did not" about a workaround they were sent (services/router/knowledge.py
suggested it), and what those answers say about each known issue.

``GET /solved/<token>?answer=yes|no[&lang=zh-CN]`` shows the question with the two answers, the one clicked in the
mail already chosen; it changes nothing (mail scanners fetch links). ``POST /solved/<token>`` records the answer:
an ``answer_workaround`` Command in the reporter's name (the link's person), which the router puts on the
ticket's timeline. The command id is the link's and the answer's: the same answer twice is one, the other answer
later is another (the newest counts). ``known_issue_figures`` counts, per project and known issue, the reports it
answered and what their reporters said; intake exposes them as metrics and the quarterly review shows them.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from html import escape
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from services.intake.action_pages import html, page
from services.intake.edge import HttpError, trace_id_of
from services.intake.feedback_form import Lang, language
from services.intake.limits import retry_after
from services.intake.shell import Door
from services.intake.survey import ANSWER_LIMIT, NONCE, busy_headers, open_reporter_link
from shared.events import Action, Command
from shared.infra.actionlinks import LinkClaims
from shared.infra.logging import get_logger

log = get_logger(__name__)

TEXT: dict[Lang, dict[str, str]] = {
    "en": {
        "title": "Did it help?",
        "question": "We sent you a suggested workaround for your report {ticket}. Did it solve your problem?",
        "yes": "Yes, this solved it",
        "no": "No, it did not",
        "thanks": "Thank you: we noted that the workaround {did} your problem.",
        "solved": "solved",
        "not_solved": "did not solve",
        "closed": "This link has expired. Thank you all the same.",
        "invalid": "This link is not valid.",
        "busy": "We could not record your answer just now. Please try again in a minute.",
        "other": "中文",
    },
    "zh-CN": {
        "title": "这个建议有帮助吗？",
        "question": "我们针对您的反馈 {ticket} 发送了一个临时解决办法。它解决了您的问题吗？",
        "yes": "是的，已解决",
        "no": "没有，未解决",
        "thanks": "谢谢：我们已记录该办法{did}您的问题。",
        "solved": "解决了",
        "not_solved": "没有解决",
        "closed": "此链接已过期，仍然感谢您。",
        "invalid": "此链接无效。",
        "busy": "暂时无法记录您的回答，请一分钟后再试。",
        "other": "English",
    },
}


class SolvedForm(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    answer: Literal["yes", "no"]
    n: str = Field(pattern=NONCE, max_length=64, description="the page's nonce: a form sent twice is one answer")
    lang: Lang = "en"


def _in_lang(html: str, lang: Lang) -> str:
    return html.replace('<html lang="en">', f'<html lang="{lang}">', 1)


def question_page(claims: LinkClaims, summary: str, lang: Lang, chosen: str | None, nonce: str) -> str:
    t = TEXT[lang]
    other: Lang = "en" if lang == "zh-CN" else "zh-CN"
    buttons = "".join(
        f'<p><button type="submit" name="answer" value="{a}"{" autofocus" if chosen == a else ""}>'
        f"{'✔ ' if chosen == a else ''}{escape(t[a])}</button></p>"
        for a in ("yes", "no")
    )
    body = (
        f"<h1>{escape(t['title'])}</h1>\n"
        f"<p>{escape(t['question'].format(ticket=claims.ticket_id))} "
        f'<a href="?lang={other}" lang="{other}">{escape(t["other"])}</a></p>\n'
        f'<p class="summary">{escape(summary)}</p>\n'
        f'<form method="post">\n<input type="hidden" name="lang" value="{lang}">\n'
        f'<input type="hidden" name="n" value="{escape(nonce, quote=True)}">\n{buttons}\n</form>'
    )
    return _in_lang(page(t["title"], body), lang)


def notice(lang: Lang, key: Literal["closed", "invalid", "busy"]) -> str:
    t = TEXT[lang]
    return _in_lang(page(t["title"], f"<h1>{escape(t['title'])}</h1>\n<p>{escape(t[key])}</p>"), lang)


def thanks(lang: Lang, solved: bool) -> str:
    t = TEXT[lang]
    did = t["solved" if solved else "not_solved"]
    return _in_lang(
        page(t["title"], f"<h1>{escape(t['title'])}</h1>\n<p>{escape(t['thanks'].format(did=did))}</p>"), lang
    )


def answer_command(claims: LinkClaims, form: SolvedForm, now: datetime, trace_id: str) -> Command:
    """The reporter's answer (actor: the link's person). Its id is the link's, the page's and the answer's: the
    same page sent twice is one command; another answer (even from the same page) is another."""
    solved = form.answer == "yes"
    return Command(
        command_id=f"solved:{claims.link_id}:{form.n}:{form.answer}",
        ticket_id=claims.ticket_id,
        action=Action.answer_workaround,
        actor=claims.person,
        solved=solved,
        issued_at=now,
        trace_id=trace_id,
    )


class SolvedIn(Door):
    """The reporter's "did the workaround solve it?" page: shown on GET, answered on POST."""

    def routes(self) -> list[Route]:
        return [
            Route("/solved/{token}", self.show, methods=["GET"]),
            Route("/solved/{token}", self.record, methods=["POST"]),
        ]

    async def opened(self, request: Request, lang: Lang) -> tuple[LinkClaims, str] | HTMLResponse:
        """The link's claims and its report's summary; or the page that says why not."""
        got = await open_reporter_link(self.deps, request.path_params["token"], "solved")
        if isinstance(got[0], str):
            key, status = got
            return html(notice(lang, key), status, **busy_headers(key))
        claims, ticket = got
        if ticket.known_issue is None:  # no workaround was suggested: nothing to answer
            return html(notice(lang, "invalid"), 404)
        return claims, ticket.summary

    async def show(self, request: Request) -> Response:
        q = request.query_params
        lang = language(q.get("lang"), request.headers.get("accept-language"))
        got = await self.opened(request, lang)
        if isinstance(got, HTMLResponse):
            return got
        chosen = q.get("answer") if q.get("answer") in ("yes", "no") else None
        return html(question_page(got[0], got[1], lang, chosen, secrets.token_urlsafe(12)))

    async def record(self, request: Request) -> Response:
        raw = await self.edge.read_form(request)
        lang = language(raw.get("lang"), request.headers.get("accept-language"))
        got = await self.opened(request, lang)
        if isinstance(got, HTMLResponse):
            return got
        claims, summary = got
        try:
            form = SolvedForm.model_validate(raw)
        except ValidationError:
            return html(question_page(claims, summary, lang, None, secrets.token_urlsafe(12)), 422)
        wait = self.edge.limiter.wait(f"solved/{claims.ticket_id}", ANSWER_LIMIT, time.monotonic())
        if wait > 0:
            return html(notice(lang, "busy"), 429, **{"Retry-After": retry_after(wait)})
        trace_id = trace_id_of(request)
        solved = form.answer == "yes"
        try:
            await self.edge.publish_commands([answer_command(claims, form, datetime.now(UTC), trace_id)], trace_id)
        except HttpError:
            return html(notice(lang, "busy"), 503, **{"Retry-After": "30"})
        log.info("workaround_answered", ticket_id=claims.ticket_id, link_id=claims.link_id, solved=solved)
        return html(thanks(lang, solved), 202)
