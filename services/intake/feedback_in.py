"""Customers' doors: the project's public feedback form (``/feedback/<project>``, pages in
services/intake/feedback_form.py) and what a mail to the support address becomes (services/intake/mail_in.py)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.intake.action_pages import html
from services.intake.edge import (
    HttpError,
)
from services.intake.feedback_form import (
    REFERENCE,
    TEXT,
    FormSubmission,
    FormView,
    feedback_event,
    form_page,
    form_source,
    language,
    refusal_page,
    report_key,
    status_of,
    status_page,
    status_path,
    thanks_page,
)
from services.intake.limits import retry_after
from services.intake.mail_in import Mail, mail_event, reply_command
from services.intake.shell import Door
from shared.infra.logging import get_logger, new_trace_id
from shared.store import db
from shared.streaming.codec import describe_validation_error

log = get_logger(__name__)


class FeedbackIn(Door):
    """The feedback form, and mail in."""

    def routes(self) -> list[Route]:
        return [
            Route("/feedback/{project}", self.form, methods=["GET", "POST"]),
            Route("/feedback/{project}/status/{reference}", self.status, methods=["GET"]),
        ]

    async def status(self, request: Request) -> Response:
        """A report's status for its reporter (the form's token; the reference the form answered with): its
        ticket number, state and last change, or that it is still being filed."""
        project, ref = request.path_params["project"], request.path_params["reference"]
        lang = language(request.query_params.get("lang"), request.headers.get("accept-language"))
        form = self.deps.config.form(project)
        if form is None or not form.accepts(request.query_params.get("t", "")):
            self.metrics.rejected.labels(reason="unauthorized").inc()
            return html(refusal_page(lang, "forbidden"), 403)
        if not REFERENCE.fullmatch(ref):
            return html(refusal_page(lang, "forbidden"), 404)
        row = await run_in_threadpool(db.latest_ticket_for, self.deps.engine, report_key(project, ref))
        return html(status_page(lang, ref, status_of(row) if row is not None else None))

    async def form(self, request: Request) -> Response:
        """The project's public feedback form: GET shows it, POST sends it (see services/intake/feedback_form.py)."""
        project = request.path_params["project"]
        form = self.deps.config.form(project)
        if request.method == "GET":
            lang = language(request.query_params.get("lang"), request.headers.get("accept-language"))
            token = request.query_params.get("t", "")
        else:
            raw = await self.edge.read_form(request)
            lang = language(raw.get("lang"), request.headers.get("accept-language"))
            token = raw.get("t", "")
        if form is None or not form.accepts(token):
            self.metrics.rejected.labels(reason="unauthorized").inc()
            return html(refusal_page(lang, "forbidden"), 403)
        view = FormView(project, form.title or project, token, lang, {"category": "bug"}, {})
        if request.method == "GET":
            return html(form_page(view))
        wait = self.edge.limiter.wait(f"form/{project}", form.rate_limit, time.monotonic())
        if wait > 0:
            self.metrics.rejected.labels(reason="rate_limited").inc()
            return html(refusal_page(lang, "busy"), 429, **{"Retry-After": retry_after(wait)})
        try:
            submitted = FormSubmission.model_validate(raw)
        except ValidationError as exc:
            errors = {
                p["field"]: TEXT[lang]["required"] if "at least" in p["error"] else p["error"]
                for p in describe_validation_error(exc)
            }
            again = FormView(project, view.title, token, lang, {k: v for k, v in raw.items() if k != "t"}, errors)
            self.metrics.rejected.labels(reason="invalid").inc()
            return html(form_page(again), 422)
        trace_id, now = new_trace_id(), datetime.now(UTC)
        event = feedback_event(
            submitted,
            project=project,
            customer=form.customer,
            event_id=uuid.uuid4().hex,
            received_at=now,
            trace_id=trace_id,
        )
        try:
            await self.edge.publish_events([event], trace_id)
        except HttpError:  # the broker did not take it: nothing was sent, the person may send it again
            return html(refusal_page(lang, "busy"), 503, **{"Retry-After": "30"})
        self.metrics.accepted.labels(integration=form_source(project)).inc()
        log.info("feedback_form_sent", project=project, reference=event.labels["reference"])
        ref = event.labels["reference"]
        return html(thanks_page(lang, ref, status_path(project, ref, token, lang)), 201)

    async def deliver_mail(self, mail: Mail) -> str:
        """What a received mail becomes, published: a reply on the ticket its subject names (when there is such a
        ticket), else a feedback ticket. Raises when the broker did not take it (the SMTP answer is then 451)."""
        trace_id, now = new_trace_id(), datetime.now(UTC)
        found = await run_in_threadpool(db.get_ticket, self.deps.engine, mail.ticket_id) if mail.ticket_id else None
        if mail.ticket_id is not None and found is not None:
            await self.edge.publish_commands([reply_command(mail, mail.ticket_id, now, trace_id)], trace_id)
            return "reply"
        if self.deps.config.mail is None:
            raise HttpError(503, "mail is not configured")
        await self.edge.publish_events([mail_event(mail, self.deps.config.mail, now, trace_id)], trace_id)
        return "feedback"
