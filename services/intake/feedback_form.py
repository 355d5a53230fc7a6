"""The public feedback form, one per project (``forms:`` in intake.yaml): a customer without an API client reports
a problem from a phone, in English or Chinese, without JavaScript, and gets a reference number.

``GET /feedback/<project>?t=<form token>[&lang=zh-CN]`` shows the form; ``POST /feedback/<project>`` (the token in
a hidden field) publishes one feedback event (kind feedback, its category as the label ``category``, the project
and customer as labels, the reference as the label ``reference``) and answers with the reference. A wrong token is
a 403 page, a limit reached a 429 page with ``Retry-After``; a form that does not validate is shown again with what
is wrong. Pages and decisions here are pure; services/intake/actions.py's headers apply (no script may run).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from services.intake.action_pages import page
from shared.events import EventKind, EventStatus, InboundEvent, Severity
from shared.store import db

Lang = Literal["en", "zh-CN"]
CATEGORIES = ("bug", "question", "request", "suggestion")

TEXT: dict[Lang, dict[str, str]] = {
    "en": {
        "title": "Report a problem",
        "intro": "Tell us what happened. We answer every report before its deadline.",
        "summary": "What is wrong? (one line)",
        "details": "Details (what you did, what you saw)",
        "category": "Kind of report",
        "bug": "Something is broken",
        "question": "A question",
        "request": "A request",
        "suggestion": "A suggestion",
        "reporter": "Your e-mail or phone",
        "send": "Send",
        "thanks": "Thank you, we have your report",
        "reference": "Your reference number",
        "keep": "Keep it: quote it when you write to us about this report.",
        "follow": "Follow this report",
        "status_title": "Your report",
        "is_ticket": "is our ticket",
        "state": "State",
        "updated": "Last change",
        "reply": "To add something, write to us with the ticket number in the subject.",
        "pending": "We have it, and it is being filed: reload this page in a minute.",
        "forbidden": "This form link is not valid. Ask your contact for the current one.",
        "busy": "Too many reports just now. Please try again in a minute.",
        "fix": "Please check the fields marked below.",
        "required": "required",
        "other": "中文",
    },
    "zh-CN": {
        "title": "反馈问题",
        "intro": "请告诉我们发生了什么。每一条反馈我们都会在时限内答复。",
        "summary": "出了什么问题？（一句话）",
        "details": "详细情况（您做了什么，看到了什么）",
        "category": "反馈类型",
        "bug": "功能故障",
        "question": "咨询问题",
        "request": "需求申请",
        "suggestion": "改进建议",
        "reporter": "您的邮箱或电话",
        "send": "提交",
        "thanks": "谢谢，我们已收到您的反馈",
        "reference": "您的反馈编号",
        "keep": "请保留此编号，就此问题联系我们时请提供。",
        "follow": "查看处理进度",
        "status_title": "您的反馈",
        "is_ticket": "对应我们的工单",
        "state": "状态",
        "updated": "最近更新",
        "reply": "如需补充，请来信并在主题中注明工单号。",
        "pending": "我们已收到，正在登记，请一分钟后刷新本页。",
        "forbidden": "此表单链接无效，请向您的联系人索取最新链接。",
        "busy": "当前提交过多，请一分钟后再试。",
        "fix": "请检查下面标出的内容。",
        "required": "必填",
        "other": "English",
    },
}


class FormSubmission(BaseModel):
    """What the form posts (application/x-www-form-urlencoded)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    t: str = Field(min_length=1, max_length=256)
    summary: str = Field(min_length=1, max_length=200)
    details: str = Field(default="", max_length=5000)
    category: Literal["bug", "question", "request", "suggestion"] = "bug"
    reporter: str = Field(min_length=3, max_length=256)
    lang: Lang = "en"


def language(query: str | None, accept: str | None) -> Lang:
    """``?lang=`` first, then the browser's Accept-Language; English otherwise."""
    if query in ("zh-CN", "zh", "zh-cn"):
        return "zh-CN"
    if query == "en":
        return "en"
    first = (accept or "").split(",")[0].strip().lower()
    return "zh-CN" if first.startswith("zh") else "en"


REFERENCE = re.compile(r"FB-[0-9A-F]{8}")
"""What ``reference`` makes."""


def form_source(project: str) -> str:
    """The integration name a project's form reports come from (its events' ``source``, its metrics' label)."""
    return f"form-{project}"


def report_key(project: str, ref: str) -> str:
    """The dedup key of the report with this reference: its event's, so its ticket's too (the status page finds
    the ticket by it)."""
    return f"{form_source(project)}/{ref}"


def reference(project: str, event_id: str) -> str:
    """A short number to quote: ``FB-`` and 8 characters of the event's id, per project."""
    return "FB-" + hashlib.sha256(f"{project}\x1f{event_id}".encode()).hexdigest()[:8].upper()


@dataclass(frozen=True, slots=True)
class FormView:
    project: str
    title: str
    token: str
    lang: Lang
    values: dict[str, str]
    errors: dict[str, str]


def form_page(view: FormView) -> str:
    t = TEXT[view.lang]
    other: Lang = "en" if view.lang == "zh-CN" else "zh-CN"
    err = view.errors

    def field(name: str, control: str) -> str:
        problem = f' <span class="note">⚠ {escape(err[name])}</span>' if name in err else ""
        return f'<p><label for="{name}">{escape(t[name])}</label>{problem}<br>{control}</p>'

    value = {k: escape(v, quote=True) for k, v in view.values.items()}
    options = "".join(
        f'<option value="{c}"{" selected" if view.values.get("category") == c else ""}>{escape(t[c])}</option>'
        for c in CATEGORIES
    )
    style = 'style="width:100%;font-size:1rem;padding:.4rem;box-sizing:border-box"'
    body = (
        f"<h1>{escape(t['title'])} · {escape(view.title)}</h1>\n"
        f'<p class="note">{escape(t["intro"])} '
        f'<a href="?t={escape(view.token, quote=True)}&amp;lang={other}" lang="{other}">{escape(t["other"])}</a></p>\n'
        + (f'<p class="note">⚠ {escape(t["fix"])}</p>\n' if err else "")
        + f'<form method="post" action="/feedback/{escape(view.project, quote=True)}">\n'
        f'<input type="hidden" name="t" value="{escape(view.token, quote=True)}">\n'
        f'<input type="hidden" name="lang" value="{view.lang}">\n'
        + field(
            "summary",
            f'<input id="summary" name="summary" required maxlength="200" {style} value="{value.get("summary", "")}">',
        )
        + field("category", f'<select id="category" name="category" {style}>{options}</select>')
        + field(
            "details",
            f'<textarea id="details" name="details" rows="6" maxlength="5000" {style}>'
            f"{value.get('details', '')}</textarea>",
        )
        + field(
            "reporter",
            f'<input id="reporter" name="reporter" required maxlength="256" autocomplete="email" {style} '
            f'value="{value.get("reporter", "")}">',
        )
        + f'<button type="submit">{escape(t["send"])}</button>\n</form>'
    )
    return _in_lang(page(t["title"], body), view.lang)


STATE_WORDS: dict[Lang, dict[str, str]] = {
    "en": {
        "open": "open, we are on it",
        "acknowledged": "someone is working on it",
        "resolved": "resolved",
        "closed": "closed",
    },
    "zh-CN": {"open": "已受理", "acknowledged": "处理中", "resolved": "已解决", "closed": "已关闭"},
}
"""A ticket's state as its reporter reads it (another state is shown as it is)."""


def status_path(project: str, ref: str, token: str, lang: Lang) -> str:
    """Where a reporter follows a report: ``/feedback/<project>/status/<reference>`` with the form's token."""
    return f"/feedback/{quote(project, safe='')}/status/{quote(ref, safe='')}?t={quote(token, safe='')}&lang={lang}"


def thanks_page(lang: Lang, ref: str, follow: str | None = None) -> str:
    t = TEXT[lang]
    link = f'<p><a href="{escape(follow, quote=True)}">{escape(t["follow"])}</a></p>\n' if follow else ""
    body = (
        f"<h1>{escape(t['thanks'])}</h1>\n"
        f'<p>{escape(t["reference"])}:</p>\n<p class="summary">{escape(ref)}</p>\n'
        f'<p class="note">{escape(t["keep"])}</p>\n' + link
    )
    return _in_lang(page(t["thanks"], body), lang)


def status_page(lang: Lang, ref: str, ticket: TicketStatus | None) -> str:
    """What a reporter may see of their report: its ticket number, state and last change (nothing internal), or
    that it is still being filed."""
    t = TEXT[lang]
    if ticket is None:
        about = f'<p class="note">{escape(t["pending"])}</p>'
    else:
        about = (
            f'<p>{escape(t["is_ticket"])}: <span class="summary">{escape(ticket.ticket_id)}</span></p>\n'
            f"<p>{escape(t['state'])}: {escape(STATE_WORDS[lang].get(ticket.state, ticket.state))}</p>\n"
            f"<p>{escape(t['updated'])}: {escape(ticket.updated_at)}</p>\n"
            f'<p class="note">{escape(t["reply"])}</p>'
        )
    body = f"<h1>{escape(t['status_title'])} {escape(ref)}</h1>\n{about}"
    return _in_lang(page(t["status_title"], body), lang)


@dataclass(frozen=True, slots=True)
class TicketStatus:
    """What the status page shows of a ticket."""

    ticket_id: str
    state: str
    updated_at: str
    """UTC, to the minute"""


def status_of(row: db.TicketRow) -> TicketStatus:
    """A ticket as its reporter may see it: number, state, and when it last changed state."""
    times = [db.as_utc(t) for t in (row.opened_at, row.acknowledged_at, row.resolved_at, row.closed_at)]
    last = max(t for t in times if t is not None)
    return TicketStatus(row.ticket_id, row.state, last.strftime("%Y-%m-%d %H:%M UTC"))


def refusal_page(lang: Lang, key: Literal["forbidden", "busy"]) -> str:
    t = TEXT[lang]
    return _in_lang(page(t["title"], f"<h1>{escape(t['title'])}</h1>\n<p>{escape(t[key])}</p>"), lang)


def _in_lang(html: str, lang: Lang) -> str:
    return html.replace('<html lang="en">', f'<html lang="{lang}">', 1)


def feedback_event(
    form: FormSubmission,
    *,
    project: str,
    customer: str | None,
    event_id: str,
    received_at: datetime,
    trace_id: str,
) -> InboundEvent:
    """The feedback event of one submitted form."""
    labels = {
        "project": project,
        "category": form.category,
        "reporter": form.reporter,
        "reference": reference(project, event_id),
    }
    if customer:
        labels["customer"] = customer
    return InboundEvent(
        event_id=event_id,
        kind=EventKind.feedback,
        source=form_source(project),
        dedup_key=report_key(project, labels["reference"]),
        status=EventStatus.firing,
        summary=form.summary,
        severity=Severity.warning,
        labels=labels,
        annotations={"details": form.details} if form.details else {},
        occurred_at=received_at,
        received_at=received_at,
        trace_id=trace_id,
    )
