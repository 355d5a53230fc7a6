"""The customer satisfaction survey and index: the reporter's page, and the API both teams read.

``GET /survey/<token>[?score=N][&lang=zh-CN]`` shows the survey of one resolved report: five choices (the score the
reporter clicked in the mail already chosen; an earlier answer shown) and a comment box, in English or Chinese,
without JavaScript. It changes nothing (mail scanners fetch links). ``POST /survey/<token>`` records the answer:
it publishes a ``rate`` Command, as the reporter (the link's person, nothing from the request), which the router
applies to the ticket; the ticket keeps one answer, the newest, and takes answers until ``SURVEY_WINDOW`` after its
resolution (the token expires then too). The command id is the link's id and a nonce of the page the answer was
given on, so a form sent twice counts once, while a later answer from a new page replaces the first.

``GET /api/v1/satisfaction?by=project|customer|team[&since=&until=&project=&customer=&team=]`` (any API client):
per group, the answers given in the period, how many were 4 or 5, and the index; for a project with a
``satisfaction`` goal in projects.yaml, the goal's verdict over its own period (shared/rules/satisfaction.py).
The pages and the API's figures are pure; the routes are thin.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from services.intake.action_pages import html, page
from services.intake.edge import HttpError, IntakeDeps, trace_id_of
from services.intake.feedback_form import Lang, language
from services.intake.limits import RateLimitConfig, retry_after
from services.intake.shell import Door
from services.router.projects import ProjectsConfig
from shared.events import Action, Command, bounded_time
from shared.infra.actionlinks import LinkAction, LinkClaims, LinkKeys, LinkRefused, verify
from shared.infra.logging import get_logger
from shared.rules.satisfaction import SCORES, Figures, judge_goal
from shared.store import db

log = get_logger(__name__)

DEFAULT_PERIOD = timedelta(days=90)
"""The API's and the metric's period when none is given: the last 90 days."""
NONCE = r"^[A-Za-z0-9_-]{8,64}$"
"""A page's nonce: a form sent twice is one answer."""
ANSWER_LIMIT = RateLimitConfig.model_validate({"requests": 10, "per": "1h"})
"""Answers a ticket's survey takes per hour (each is a ticket version and a timeline entry)."""

TEXT: dict[Lang, dict[str, str]] = {
    "en": {
        "title": "How did we do?",
        "intro": "Your report {ticket} has been resolved. How satisfied are you with how we handled it?",
        "5": "Very satisfied",
        "4": "Satisfied",
        "3": "Neutral",
        "2": "Dissatisfied",
        "1": "Very dissatisfied",
        "comment": "Anything you want to tell us? (optional)",
        "send": "Send",
        "earlier": "Your answer so far: {score}/5. You can change it until {closes}.",
        "thanks": "Thank you for your answer",
        "recorded": "We recorded {score}/5. You can change your answer with the same link until {closes}.",
        "closed": "This survey has closed. Thank you all the same.",
        "invalid": "This survey link is not valid.",
        "reopened": "This report was reopened: its survey opens again when it is resolved.",
        "busy": "We could not record your answer just now. Please try again in a minute.",
        "choose": "Please choose a score from 1 to 5.",
        "other": "中文",
    },
    "zh-CN": {
        "title": "服务满意度调查",
        "intro": "您反馈的问题 {ticket} 已处理完毕。您对我们的处理满意吗？",
        "5": "非常满意",
        "4": "满意",
        "3": "一般",
        "2": "不满意",
        "1": "非常不满意",
        "comment": "您还有什么想告诉我们的吗？（选填）",
        "send": "提交",
        "earlier": "您目前的评分：{score}/5。{closes} 之前可以修改。",
        "thanks": "感谢您的评价",
        "recorded": "已记录您的评分 {score}/5。{closes} 之前可以用同一链接修改。",
        "closed": "本次调查已结束，仍然感谢您。",
        "invalid": "此调查链接无效。",
        "reopened": "此问题已重新打开，处理完毕后可再次评价。",
        "busy": "暂时无法记录您的评价，请一分钟后再试。",
        "choose": "请选择 1 到 5 分。",
        "other": "English",
    },
}


class SurveyForm(BaseModel):
    """What the survey page posts (application/x-www-form-urlencoded)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    score: int = Field(ge=1, le=5)
    comment: str = Field(default="", max_length=2000)
    n: str = Field(pattern=NONCE, max_length=64, description="the page's nonce: a form sent twice is one answer")
    lang: Lang = "en"

    @field_validator("comment")
    @classmethod
    def _printable(cls, text: str) -> str:
        """No NUL or other control characters but line breaks and tabs (PostgreSQL refuses NUL in text)."""
        return "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc")


def reporter_claims(
    keys: LinkKeys, token: str, action: LinkAction, now: datetime
) -> LinkClaims | Literal["closed", "invalid"]:
    """A reporter's link for ``action`` (survey, solved): its claims, ``closed`` when it is authentic but expired,
    else ``invalid`` (forged, malformed, or a link for something else)."""
    try:
        claims = verify(keys, token, now)
    except LinkRefused as exc:
        log.info("reporter_link_refused", action=action, reason=exc.reason)
        mine = exc.claims is not None and exc.claims.action == action
        return "closed" if exc.reason == "expired" and mine else "invalid"
    return claims if claims.action == action else "invalid"


Refusal = tuple[Literal["closed", "invalid", "busy"], int]
"""Why a reporter's link shows no page: the notice to show instead, and its status."""


async def open_reporter_link(
    deps: IntakeDeps, token: str, action: LinkAction
) -> tuple[LinkClaims, db.TicketRow] | Refusal:
    """A reporter's link for ``action`` (survey, solved) and the ticket it is about; else why not: ``closed`` (410,
    authentic but expired), ``invalid`` (403 forged or for something else; 404 not configured or no such ticket),
    ``busy`` (503, the read model does not answer)."""
    if deps.link_keys is None:
        return "invalid", 404
    checked = reporter_claims(deps.link_keys, token, action, datetime.now(UTC))
    if checked == "closed":
        return "closed", 410
    if checked == "invalid":
        return "invalid", 403
    try:
        found = await run_in_threadpool(db.get_ticket, deps.engine, checked.ticket_id)
    except SQLAlchemyError as exc:
        log.warning("reporter_link_db_unavailable", action=action, error=type(exc).__name__)
        return "busy", 503
    if found is None:
        return "invalid", 404
    return checked, found[0]


def busy_headers(key: str) -> dict[str, str]:
    """A busy page asks to come back in half a minute."""
    return {"Retry-After": "30"} if key == "busy" else {}


def _closes(claims: LinkClaims) -> str:
    return claims.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _in_lang(html: str, lang: Lang) -> str:
    return html.replace('<html lang="en">', f'<html lang="{lang}">', 1)


@dataclass(frozen=True, slots=True)
class SurveyView:
    claims: LinkClaims
    summary: str
    lang: Lang
    chosen: int | None
    comment: str
    earlier: int | None
    nonce: str
    problem: str | None = None


def survey_page(view: SurveyView) -> str:
    """The survey: the report, five choices, a comment box and the button; no script."""
    t = TEXT[view.lang]
    other: Lang = "en" if view.lang == "zh-CN" else "zh-CN"
    choices = "".join(
        f'<p><label><input type="radio" name="score" value="{s}" required'
        f"{' checked' if view.chosen == s else ''}> {s} · {escape(t[str(s)])}</label></p>"
        for s in sorted(SCORES, reverse=True)
    )
    earlier = (
        f'<p class="note">{escape(t["earlier"].format(score=view.earlier, closes=_closes(view.claims)))}</p>\n'
        if view.earlier is not None
        else ""
    )
    problem = f'<p class="note">⚠ {escape(view.problem)}</p>\n' if view.problem else ""
    style = 'style="width:100%;font-size:1rem;padding:.4rem;box-sizing:border-box"'
    body = (
        f"<h1>{escape(t['title'])}</h1>\n"
        f"<p>{escape(t['intro'].format(ticket=view.claims.ticket_id))} "
        f'<a href="?lang={other}" lang="{other}">{escape(t["other"])}</a></p>\n'
        f'<p class="summary">{escape(view.summary)}</p>\n' + earlier + problem + '<form method="post">\n'
        f'<input type="hidden" name="n" value="{escape(view.nonce, quote=True)}">\n'
        f'<input type="hidden" name="lang" value="{view.lang}">\n'
        f"{choices}\n"
        f'<p><label for="comment">{escape(t["comment"])}</label><br>'
        f'<textarea id="comment" name="comment" rows="4" maxlength="2000" {style}>'
        f"{escape(view.comment)}</textarea></p>\n"
        f'<button type="submit">{escape(t["send"])}</button>\n</form>'
    )
    return _in_lang(page(t["title"], body), view.lang)


def thanks_page(lang: Lang, claims: LinkClaims, score: int) -> str:
    t = TEXT[lang]
    body = f"<h1>{escape(t['thanks'])}</h1>\n<p>{escape(t['recorded'].format(score=score, closes=_closes(claims)))}</p>"
    return _in_lang(page(t["thanks"], body), lang)


Notice = Literal["closed", "invalid", "reopened", "busy"]


def notice_page(lang: Lang, key: Notice) -> str:
    t = TEXT[lang]
    return _in_lang(page(t["title"], f"<h1>{escape(t['title'])}</h1>\n<p>{escape(t[key])}</p>"), lang)


def rate_command(claims: LinkClaims, form: SurveyForm, now: datetime, trace_id: str) -> Command:
    """The reporter's answer as a command (actor: the link's person). Its id is the link's, the page's and the
    answer's: the same answer sent twice is one command; another answer, even from the same page, is another."""
    answer = hashlib.sha256(f"{form.score}\x1f{form.comment}".encode()).hexdigest()[:16]
    return Command(
        command_id=f"survey:{claims.link_id}:{form.n}:{answer}",
        ticket_id=claims.ticket_id,
        action=Action.rate,
        actor=claims.person,
        reason=form.comment,
        score=form.score,
        issued_at=now,
        trace_id=trace_id,
    )


By = Literal["project", "customer", "team"]
BY: tuple[By, ...] = ("project", "customer", "team")


def figures_json(key: str | None, figures: Figures) -> dict[str, Any]:
    index = figures.index
    return {
        "key": key,
        "answers": figures.answers,
        "satisfied": figures.satisfied,
        "index": round(index, 4) if index is not None else None,
    }


def satisfaction_report(
    engine: Engine,
    projects: ProjectsConfig,
    by: By,
    since: datetime,
    until: datetime,
    filters: Mapping[str, str],
    now: datetime,
) -> dict[str, Any]:
    """The API's answer: figures per group in [since, until), and each project's goal verdict over its period."""
    rows = db.survey_figures(
        engine,
        by,
        since=since,
        until=until,
        project=filters.get("project"),
        customer=filters.get("customer"),
        team=filters.get("team"),
    )
    groups = [figures_json(key, Figures(n, s)) for key, n, s in rows]
    goals = []
    for project in projects.projects:
        goal = project.satisfaction
        if goal is None or filters.get("project") not in (None, project.name):
            continue
        if filters.get("customer") not in (None, project.customer):
            continue
        start, ends = project.go_live, project.go_live + goal.within
        counted = db.survey_figures(engine, "project", since=start, until=ends, project=project.name)
        figures = Figures(sum(n for _, n, _ in counted), sum(s for _, _, s in counted))
        p1s = db.count_p1(engine, project.name, start, ends)
        verdict = judge_goal(goal, project.go_live, now, figures, p1s)
        goals.append(
            {
                "project": project.name,
                "customer": project.customer,
                "goal": {"index": goal.index, "within_days": goal.within.total_seconds() / 86400, "no_p1": goal.no_p1},
                "period": {"since": start.isoformat(), "until": ends.isoformat()},
                **figures_json(project.name, figures),
                "p1_tickets": p1s,
                "status": verdict.status,
                "why": verdict.why,
            }
        )
    return {"by": by, "since": since.isoformat(), "until": until.isoformat(), "groups": groups, "goals": goals}


def period(query: Mapping[str, str], now: datetime) -> tuple[datetime, datetime]:
    """``since``/``until`` (ISO 8601) of a query; by default the last 90 days. 422 when unreadable or reversed."""

    def at(name: str, default: datetime) -> datetime:
        text = query.get(name)
        if not text:
            return default
        try:
            return bounded_time(datetime.fromisoformat(text))  # a naive time comes back as UTC
        except ValueError as exc:
            raise HttpError(422, f"{name!r} is not an ISO 8601 time between 1970 and 9000: {text[:64]!r}") from exc

    until = at("until", now)
    since = at("since", until - DEFAULT_PERIOD)
    if since >= until:
        raise HttpError(422, "'since' must be before 'until'")
    return since, until


@dataclass(frozen=True, slots=True)
class Opened:
    """A survey link that may be answered: its claims, its report and the answer so far."""

    claims: LinkClaims
    ticket: db.TicketRow
    answer: db.SurveyAnswerRow | None


class SurveyIn(Door):
    """The survey page (shown on GET, answered on POST) and the satisfaction API."""

    def routes(self) -> list[Route]:
        return [
            Route("/survey/{token}", self.show, methods=["GET"]),
            Route("/survey/{token}", self.answer, methods=["POST"]),
            Route("/api/v1/satisfaction", self.satisfaction, methods=["GET"]),
        ]

    async def survey_of(self, request: Request, lang: Lang) -> Opened | HTMLResponse:
        """The link's claims, its report and the answer so far; or the page that says why not."""
        opened = await open_reporter_link(self.deps, request.path_params["token"], "survey")
        if isinstance(opened[0], str):
            key, status = opened
            return html(notice_page(lang, key), status, **busy_headers(key))
        claims, ticket = opened
        try:
            answer = await run_in_threadpool(db.get_survey_answer, self.deps.engine, claims.ticket_id)
        except SQLAlchemyError as exc:
            log.warning("survey_db_unavailable", error=type(exc).__name__)
            return html(notice_page(lang, "busy"), 503, **busy_headers("busy"))
        if ticket.state not in ("resolved", "closed"):
            return html(notice_page(lang, "reopened"), 409)
        return Opened(claims, ticket, answer)

    async def show(self, request: Request) -> Response:
        q = request.query_params
        lang = language(q.get("lang"), request.headers.get("accept-language"))
        opened = await self.survey_of(request, lang)
        if isinstance(opened, HTMLResponse):
            return opened
        earlier = opened.answer
        asked = q.get("score", "")
        chosen = int(asked) if asked in {str(s) for s in SCORES} else (earlier.score if earlier else None)
        view = SurveyView(
            opened.claims,
            opened.ticket.summary,
            lang,
            chosen,
            earlier.comment if earlier else "",
            earlier.score if earlier else None,
            secrets.token_urlsafe(12),
        )
        return html(survey_page(view))

    async def answer(self, request: Request) -> Response:
        raw = await self.edge.read_form(request)
        lang = language(raw.get("lang"), request.headers.get("accept-language"))
        opened = await self.survey_of(request, lang)
        if isinstance(opened, HTMLResponse):
            return opened
        claims, earlier = opened.claims, opened.answer
        try:
            form = SurveyForm.model_validate(raw)
        except ValidationError:
            view = SurveyView(
                claims,
                opened.ticket.summary,
                lang,
                None,
                raw.get("comment", "")[:2000],
                earlier.score if earlier else None,
                secrets.token_urlsafe(12),
                TEXT[lang]["choose"],
            )
            return html(survey_page(view), 422)
        wait = self.edge.limiter.wait(f"survey/{claims.ticket_id}", ANSWER_LIMIT, time.monotonic())
        if wait > 0:
            return html(notice_page(lang, "busy"), 429, **{"Retry-After": retry_after(wait)})
        trace_id = trace_id_of(request)
        try:
            await self.edge.publish_commands([rate_command(claims, form, datetime.now(UTC), trace_id)], trace_id)
        except HttpError:  # the broker did not take it: nothing was recorded, the same page may be sent again
            return html(notice_page(lang, "busy"), 503, **{"Retry-After": "30"})
        log.info("survey_answered", ticket_id=claims.ticket_id, link_id=claims.link_id, score=form.score)
        return html(thanks_page(lang, claims, form.score), 202)

    async def satisfaction(self, request: Request) -> Response:
        try:
            self.edge.api_client(request, "viewer")
            q = request.query_params
            by = q.get("by", "project")
            if by not in BY:
                raise HttpError(422, f"'by' must be one of {list(BY)}, not {by[:64]!r}")
            now = datetime.now(UTC)
            since, until = period(q, now)
            filters: dict[str, str] = {k: q[k] for k in BY if q.get(k)}
            projects = await self.current_projects()
            body = await run_in_threadpool(
                satisfaction_report, self.deps.engine, projects, by, since, until, filters, now
            )
        except HttpError as exc:
            return self.edge.fail(exc, "api")
        return JSONResponse(body)

    async def current_projects(self) -> ProjectsConfig:
        projects = self.deps.projects
        if projects is None:
            return ProjectsConfig()
        await run_in_threadpool(projects.poll)
        return projects.current
