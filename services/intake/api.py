"""The HTTP edge: inbound integrations, the ticket REST API, health and metrics (Starlette, thin handlers).

Error answers are JSON ``{"error": ..., "problems": [{"field": ..., "error": ...}]}``:
400 malformed JSON, 401 bad or missing token, 404 unknown ticket, 413 oversize body, 422 schema violations
(with field paths), 503 while Kafka does not acknowledge (with Retry-After, so senders retry).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from services.intake.action_pages import HTML_HEADERS
from services.intake.actions import action_routes
from services.intake.config import ApiClient, Integration, Role, may_act_for, role_allows, token_matches
from services.intake.deliveries import delivery_routes
from services.intake.edge import (
    VERBS,
    CommandBody,
    HttpError,
    IntakeDeps,
    RequestIds,
    bearer_token,
    iso_time,
    parse_json,
    read_body,
)
from services.intake.feedback_form import (
    TEXT,
    FormSubmission,
    FormView,
    feedback_event,
    form_page,
    language,
    refusal_page,
    thanks_page,
)
from services.intake.formats import opsgenie, pagerduty
from services.intake.formats.common import (
    Encoded,
    ParsedBatch,
    encoded,
    watchdogs_as_beats,
    with_severity_words,
)
from services.intake.formats.registry import ALERTMANAGER_SHAPED, LEAN_PARSERS, PARSERS, VERIFIERS, truncated_alerts
from services.intake.limits import Limiter, retry_after
from services.intake.mail_in import Mail, mail_event, reply_command
from services.intake.metrics import IntakeMetrics, KnownIssueAnswers, SatisfactionIndex, UnresolvedTickets
from services.intake.openapi import document
from services.intake.publisher import PublishUnavailableError, Record
from services.intake.solved import solved_routes
from services.intake.survey import survey_routes
from shared.events import Command, InboundEvent, beat_event, bounded_time
from shared.infra.logging import bind_ids, get_logger, make_headers, new_trace_id
from shared.rules.oncall import OnCall, Override, OverrideRequest, TeamsConfig, on_call, upcoming_shifts
from shared.rules.silences import Silence, SilenceRequest
from shared.rules.windows import TimeWindowRequest
from shared.store import db
from shared.streaming.codec import describe_validation_error

log = get_logger(__name__)


def ticket_json(row: db.TicketRow) -> dict[str, Any]:
    """A ticket row as JSON: every time in ISO 8601 with its offset."""
    return {k: iso_time(v) if isinstance(v, datetime) else v for k, v in row.model_dump().items()}


W = TypeVar("W", bound=TimeWindowRequest)


def requested_window(model: type[W], payload: Any, now: datetime, error: str) -> tuple[W, tuple[datetime, datetime]]:
    """A silence's or override's body and its (start, end), or a 422 naming the field."""
    try:
        body = model.model_validate(payload)
        return body, body.window(now)
    except ValidationError as exc:
        raise HttpError(422, error, describe_validation_error(exc)) from exc
    except ValueError as exc:
        raise HttpError(422, error, [{"field": "ends_at", "error": str(exc)}]) from exc


def on_call_json(found: OnCall | None) -> dict[str, Any]:
    if found is None:
        return {"person": None, "source": None, "until": None, "override_id": None}
    return {
        "person": found.person,
        "source": found.source,
        "until": found.until.isoformat(),
        "override_id": found.override_id,
    }


def silence_json(silence: Silence, now: datetime) -> dict[str, Any]:
    data = silence.model_dump(mode="json")
    data["state"] = silence.state(now)
    return data


def lean_batch(integration: Integration, raw: bytes, now: datetime, trace_id: str) -> ParsedBatch | None:
    """The body's events by its format's lean parser (no pydantic), when it has one and it is sure; else None."""
    lean = LEAN_PARSERS.get(integration.format)
    if lean is None:
        return None
    hb = integration.heartbeat
    beats = hb.alertname if hb is not None and integration.format in ALERTMANAGER_SHAPED else None
    return lean(raw, integration.name, now, trace_id, integration.severities, beats)


def pydantic_batch(integration: Integration, raw: bytes, now: datetime, trace_id: str) -> ParsedBatch:
    """The body's events by its format's parser: 400 for malformed JSON, 422 naming the fields that do not fit."""
    payload = parse_json(raw)
    parse = PARSERS[integration.format]
    try:
        events = parse(payload, integration.name, raw, now, trace_id)
    except ValidationError as exc:
        raise HttpError(422, f"invalid {integration.format} payload", describe_validation_error(exc)) from exc
    events, unknown_words = with_severity_words(events, integration.severities)
    hb = integration.heartbeat
    if hb is not None and integration.format in ALERTMANAGER_SHAPED:
        every, grace = hb.every, hb.every if hb.grace is None else hb.grace
        events = watchdogs_as_beats(events, hb.alertname, integration.heartbeat_name() or "", every, grace)
    return ParsedBatch([encoded(e) for e in events], unknown_words, truncated_alerts(integration.format, payload))


def create_app(deps: IntakeDeps) -> Starlette:
    metrics = IntakeMetrics(deps.registry)
    deps.registry.register(UnresolvedTickets(deps.engine))
    deps.registry.register(SatisfactionIndex(deps.engine))
    deps.registry.register(KnownIssueAnswers(deps.engine))

    def fail(exc: HttpError, reason: str) -> JSONResponse:
        metrics.rejected.labels(reason=reason).inc()
        return exc.response()

    limiter = Limiter()

    def limited(integration: Integration) -> None:
        """429 when this integration is over its rate limit (counted as one request when not)."""
        wait = limiter.wait(integration.name, integration.rate_limit, time.monotonic())
        if wait > 0 and integration.rate_limit is not None:
            raise HttpError(
                429,
                f"rate limit of integration {integration.name!r} reached: {integration.rate_limit.describe()}",
                retry_after_s=wait,
            )

    def check_signature(integration: Integration, request: Request, raw: bytes) -> None:
        """401 unless the request carries the signature its integration's format asks for (when it signs)."""
        verify = VERIFIERS.get(integration.format)
        refused = verify(integration, request.headers, raw, datetime.now(UTC)) if verify is not None else None
        if refused is not None:
            raise HttpError(401, f"invalid signature: {refused}")

    async def publish(records: list[Record]) -> None:
        started = time.perf_counter()
        try:
            await deps.publisher.publish(records)
        except PublishUnavailableError as exc:
            log.warning("publish_unavailable", error=str(exc), records=len(records))
            raise HttpError(503, "the event broker did not acknowledge; retry later") from exc
        metrics.publish_seconds.observe(time.perf_counter() - started)

    async def publish_encoded(events: list[Encoded], trace_id: str) -> None:
        """Each event to ``events``, keyed by its dedup key, with its ids in the headers (``make_headers``'s,
        written out: this runs for every alert)."""
        topic, trace = deps.topics.events.name, trace_id.encode()
        await publish(
            [
                Record(topic, e.dedup_key, e.value, [("trace_id", trace), ("event_id", e.event_id.encode())])
                for e in events
            ]
        )

    async def publish_events(events: list[InboundEvent], trace_id: str) -> None:
        await publish_encoded([encoded(e) for e in events], trace_id)

    async def publish_commands(commands: list[Command], trace_id: str) -> None:
        """Each command to ``commands``, keyed by its ticket, with its ids in the headers (fields at None left
        out: a command reads as it did before ``via``)."""
        await publish(
            [
                Record(
                    deps.topics.commands.name,
                    c.ticket_id,
                    c.__pydantic_serializer__.to_json(c, exclude_none=True),
                    make_headers(trace_id=trace_id, ticket_id=c.ticket_id),
                )
                for c in commands
            ]
        )

    async def receive(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            token = bearer_token(request)
            integration = deps.config.integration(name)
            if integration is None or not token_matches(integration.secret(), token):
                raise HttpError(401, "invalid token for this integration")
            limited(integration)
            raw = await read_body(request, deps.max_body_bytes)
            check_signature(integration, request, raw)
            trace_id = request.headers.get("x-trace-id") or new_trace_id()
            now = datetime.now(UTC)
            batch = lean_batch(integration, raw, now, trace_id) or pydantic_batch(integration, raw, now, trace_id)
            events = batch.events
            await publish_encoded(events, trace_id)
        except HttpError as exc:
            return fail(
                exc,
                {400: "malformed", 401: "unauthorized", 413: "oversize", 422: "invalid", 429: "rate_limited"}.get(
                    exc.status, "unavailable"
                ),
            )
        metrics.accepted.labels(integration=integration.name).inc(len(events))
        bind_ids(trace_id=trace_id)
        log.info("events_accepted", integration=integration.name, count=len(events))
        answer: dict[str, Any] = {
            "status": "accepted",
            "trace_id": trace_id,
            "events": [{"event_id": e.event_id, "dedup_key": e.dedup_key, "status": e.status} for e in events],
        }
        truncated = batch.truncated
        if truncated:
            metrics.truncated.labels(integration=integration.name).inc(truncated)
            log.warning("alerts_truncated_by_sender", integration=integration.name, truncated=truncated)
            answer["truncated_alerts"] = truncated
        if batch.unknown_words:
            metrics.unmapped_severity.labels(integration=integration.name).inc(len(batch.unknown_words))
            log.info("severity_words_unmapped", integration=integration.name, words=sorted(set(batch.unknown_words)))
        return Response(orjson.dumps(answer), 202, media_type="application/json")  # JSONResponse's bytes, faster

    async def pagerduty_sender(request: Request) -> tuple[bytes, Any, Integration] | Response:
        """A PagerDuty request's body, parsed, and the integration its routing key names; or PagerDuty's answer
        refusing it."""
        try:
            raw = await read_body(request, deps.max_body_bytes)
            payload = parse_json(raw)
        except HttpError as exc:
            metrics.rejected.labels(reason="malformed").inc()
            return JSONResponse({"status": "invalid event", "message": exc.error}, status_code=exc.status)
        key = pagerduty.routing_key(payload) or ""
        integration = next(
            (i for i in deps.config.integrations if i.format == "pagerduty" and token_matches(i.secret(), key)), None
        )
        if integration is None:
            metrics.rejected.labels(reason="unauthorized").inc()
            return JSONResponse({"status": "invalid event", "message": "unknown routing_key"}, status_code=401)
        return raw, payload, integration

    async def change_enqueue(request: Request) -> Response:
        """PagerDuty's change events (``/v2/change/enqueue``): a comment on each open ticket of the integration."""
        found = await pagerduty_sender(request)
        if isinstance(found, Response):
            return found
        raw, payload, integration = found
        try:
            limited(integration)
            change = pagerduty.ChangeEvent.model_validate(payload)
            tickets = await run_in_threadpool(db.unresolved_from, deps.engine, integration.name)
            trace_id, now = new_trace_id(), datetime.now(UTC)
            comments = pagerduty.change_comments(change, raw, integration.name, tickets, now, trace_id)
            await publish_commands(comments, trace_id)
        except ValidationError as exc:
            metrics.rejected.labels(reason="invalid").inc()
            errors = [f"{p['field']}: {p['error']}" for p in describe_validation_error(exc)]
            return JSONResponse(
                {"status": "invalid event", "message": "Event object is invalid", "errors": errors}, 400
            )
        except HttpError as exc:
            return fail(exc, "rate_limited" if exc.status == 429 else "unavailable")
        log.info("change_event_recorded", integration=integration.name, tickets=len(comments))
        return JSONResponse({"status": "success", "message": "Change event processed"}, status_code=202)

    async def enqueue(request: Request) -> Response:
        """PagerDuty Events API v2, at PagerDuty's path: the routing key names (and authenticates) the integration."""
        found = await pagerduty_sender(request)
        if isinstance(found, Response):
            return found
        raw, payload, integration = found
        try:
            limited(integration)
        except HttpError as exc:  # PagerDuty's own answer when throttled: 429
            metrics.rejected.labels(reason="rate_limited").inc()
            wait = {"Retry-After": retry_after(exc.retry_after_s or 1.0)}
            return JSONResponse({"status": "throttled", "message": exc.error}, status_code=429, headers=wait)
        trace_id = request.headers.get("x-trace-id") or new_trace_id()
        try:
            events = pagerduty.to_events(
                payload, integration=integration.name, raw=raw, received_at=datetime.now(UTC), trace_id=trace_id
            )
        except ValidationError as exc:
            metrics.rejected.labels(reason="invalid").inc()
            errors = [f"{p['field']}: {p['error']}" for p in describe_validation_error(exc)]
            return JSONResponse(
                {"status": "invalid event", "message": "Event object is invalid", "errors": errors}, status_code=400
            )
        try:
            await publish_events(events, trace_id)
        except HttpError as exc:
            return fail(exc, "unavailable")
        metrics.accepted.labels(integration=integration.name).inc(len(events))
        dedup_key = events[0].dedup_key.removeprefix(f"{integration.name}/")
        return JSONResponse(
            {"status": "success", "message": "Event processed", "dedup_key": dedup_key}, status_code=202
        )

    async def heartbeat(request: Request) -> Response:
        """``POST /api/v1/heartbeats/<name>``: one beat, with the token of the integration that declares it."""
        name = request.path_params["name"]
        try:
            token = bearer_token(request)
            integration = deps.config.heartbeat(name)
            if integration is None or integration.heartbeat is None or not token_matches(integration.secret(), token):
                raise HttpError(401, "invalid token for this heartbeat")
            limited(integration)
            raw = await read_body(request, deps.max_body_bytes)  # a body, if any, is not kept
            check_signature(integration, request, raw)  # an integration that signs signs its beats too
            trace_id = request.headers.get("x-trace-id") or new_trace_id()
            hb, now = integration.heartbeat, datetime.now(UTC)
            grace = hb.every if hb.grace is None else hb.grace
            beat = beat_event(name, integration.name, hb.every, grace, now, uuid.uuid4().hex, trace_id)
            await publish_events([beat], trace_id)
        except HttpError as exc:
            return fail(exc, {401: "unauthorized", 413: "oversize", 429: "rate_limited"}.get(exc.status, "unavailable"))
        due = now + hb.every + grace
        return JSONResponse(
            {"status": "accepted", "heartbeat": name, "missing_after": due.isoformat()}, status_code=202
        )

    async def feedback_form(request: Request) -> Response:
        """The project's public feedback form: GET shows it, POST sends it (see services/intake/feedback_form.py)."""
        project = request.path_params["project"]
        form = deps.config.form(project)
        if request.method == "GET":
            lang = language(request.query_params.get("lang"), request.headers.get("accept-language"))
            token = request.query_params.get("t", "")
        else:
            raw = await read_form(request)
            lang = language(raw.get("lang"), request.headers.get("accept-language"))
            token = raw.get("t", "")
        if form is None or not token_matches(form.secret(), token):
            metrics.rejected.labels(reason="unauthorized").inc()
            return HTMLResponse(refusal_page(lang, "forbidden"), status_code=403, headers=HTML_HEADERS)
        view = FormView(project, form.title or project, token, lang, {"category": "bug"}, {})
        if request.method == "GET":
            return HTMLResponse(form_page(view), headers=HTML_HEADERS)
        wait = limiter.wait(f"form/{project}", form.rate_limit, time.monotonic())
        if wait > 0:
            metrics.rejected.labels(reason="rate_limited").inc()
            headers = {**HTML_HEADERS, "Retry-After": retry_after(wait)}
            return HTMLResponse(refusal_page(lang, "busy"), status_code=429, headers=headers)
        try:
            submitted = FormSubmission.model_validate(raw)
        except ValidationError as exc:
            errors = {
                p["field"]: TEXT[lang]["required"] if "at least" in p["error"] else p["error"]
                for p in describe_validation_error(exc)
            }
            again = FormView(project, view.title, token, lang, {k: v for k, v in raw.items() if k != "t"}, errors)
            metrics.rejected.labels(reason="invalid").inc()
            return HTMLResponse(form_page(again), status_code=422, headers=HTML_HEADERS)
        trace_id, now = new_trace_id(), datetime.now(UTC)
        event = feedback_event(
            submitted,
            project=project,
            customer=form.customer,
            integration=f"form-{project}",
            event_id=uuid.uuid4().hex,
            received_at=now,
            trace_id=trace_id,
        )
        try:
            await publish_events([event], trace_id)
        except HttpError:  # the broker did not take it: nothing was sent, the person may send it again
            headers = {**HTML_HEADERS, "Retry-After": "30"}
            return HTMLResponse(refusal_page(lang, "busy"), status_code=503, headers=headers)
        metrics.accepted.labels(integration=f"form-{project}").inc()
        log.info("feedback_form_sent", project=project, reference=event.labels["reference"])
        return HTMLResponse(thanks_page(lang, event.labels["reference"]), status_code=201, headers=HTML_HEADERS)

    async def read_form(request: Request) -> dict[str, str]:
        """The posted form's fields (the last of each name), within the body limit; anything else is empty."""
        try:
            raw = await read_body(request, deps.max_body_bytes)
        except HttpError:
            return {}
        try:
            fields = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=50)
        except ValueError:  # more fields than any of our forms has: read as an empty form (then a 4xx page)
            return {}
        return {k: v[-1] for k, v in fields.items() if v}

    def opsgenie_endpoint(verb: opsgenie.Verb) -> Callable[[Request], Awaitable[Response]]:
        """Opsgenie's alert API at Opsgenie's paths: the GenieKey names (and authenticates) the integration."""

        async def handle(request: Request) -> Response:
            started = time.perf_counter()
            trace_id = request.headers.get("x-trace-id") or new_trace_id()

            def answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
                took = round(time.perf_counter() - started, 3)
                return JSONResponse({**body, "took": took, "requestId": trace_id}, status_code=status, headers=headers)

            key = opsgenie.genie_key(request.headers.get("authorization"))
            integration = next(
                (
                    i
                    for i in deps.config.integrations
                    if i.format == "opsgenie" and token_matches(i.secret(), key or "")
                ),
                None,
            )
            if integration is None:
                metrics.rejected.labels(reason="unauthorized").inc()
                return answer(401, {"message": "Could not authenticate: give Authorization: GenieKey <key>"})
            alias = request.path_params.get("identifier")
            try:
                limited(integration)
                if alias is not None and request.query_params.get("identifierType", "id") != "alias":
                    raise HttpError(422, "identifierType must be alias: ticketloop knows alerts by their alias")
                raw = await read_body(request, deps.max_body_bytes)
                payload = parse_json(raw) if raw.strip() or verb == "create" else None
                try:
                    events = opsgenie.to_events(
                        verb,
                        payload,
                        alias,
                        integration=integration.name,
                        raw=raw,
                        received_at=datetime.now(UTC),
                        trace_id=trace_id,
                    )
                except ValidationError as exc:
                    problems = describe_validation_error(exc)
                    raise HttpError(422, "Request body is not processable", problems) from exc
                await publish_events(events, trace_id)
            except HttpError as exc:
                reason = {400: "malformed", 413: "oversize", 422: "invalid", 429: "rate_limited"}.get(exc.status)
                metrics.rejected.labels(reason=reason or "unavailable").inc()
                body: dict[str, Any] = {"message": exc.error}
                if exc.problems:
                    body["errors"] = {p["field"]: p["error"] for p in exc.problems}
                wait = exc.response().headers.get("retry-after")
                return answer(exc.status, body, {"Retry-After": wait} if wait else None)
            metrics.accepted.labels(integration=integration.name).inc(len(events))
            return answer(202, {"result": "Request will be processed"})

        return handle

    def api_client(request: Request, needed: Role = "viewer") -> ApiClient:
        """The authenticated API client, if its role allows what this endpoint does (401 / 403)."""
        client = deps.config.api_client_for(bearer_token(request))
        if client is None:
            raise HttpError(401, "invalid API token")
        if not role_allows(client.role, needed):
            raise HttpError(403, f"API client {client.name!r} has role {client.role}; this needs {needed}")
        return client

    def acting(client: ApiClient, person: str | None) -> str:
        """Who is recorded as acting: the client itself, or a person it may act for (403 otherwise)."""
        if person is None or person == client.name:
            return client.name
        if not may_act_for(client.acts_for, client.name, person):
            raise HttpError(403, f"API client {client.name!r} may not act for {person!r} (acts_for in intake.yaml)")
        return person

    async def list_tickets(request: Request) -> Response:
        try:
            api_client(request)
            q = request.query_params
            try:
                limit = min(max(int(q.get("limit", "100")), 1), 1000)
                offset = max(int(q.get("offset", "0")), 0)
            except ValueError as exc:
                raise HttpError(422, "limit and offset must be integers") from exc
            rows = await run_in_threadpool(
                db.list_tickets, deps.engine, state=q.get("state"), team=q.get("team"), limit=limit, offset=offset
            )
        except HttpError as exc:
            return fail(exc, "api")
        return JSONResponse({"tickets": [ticket_json(r) for r in rows]})

    async def get_ticket(request: Request) -> Response:
        try:
            api_client(request)
            found = await run_in_threadpool(db.get_ticket, deps.engine, request.path_params["ticket_id"])
            if found is None:
                raise HttpError(404, f"no ticket {request.path_params['ticket_id']!r}")
        except HttpError as exc:
            return fail(exc, "api")
        row, timeline = found
        body = ticket_json(row)
        body["timeline"] = [
            {"version": t.version, "change": t.change, "actor": t.actor, "reason": t.reason, "at": iso_time(t.at)}
            for t in timeline
        ]
        deliveries = await run_in_threadpool(db.list_deliveries, deps.engine, row.ticket_id)
        body["notifications"] = [
            {
                "kind": d.kind,
                "channel": d.channel,
                "recipient": d.recipient,
                "status": d.status,
                "attempts": d.attempts,
                "detail": d.error,
                "at": iso_time(d.at),
            }
            for d in sorted(deliveries, key=lambda d: db.as_utc(d.at) or d.at)
        ]
        return JSONResponse(body)

    async def create_silence(request: Request) -> Response:
        try:
            client = api_client(request, "responder")
            raw = await read_body(request, deps.max_body_bytes)
            payload = parse_json(raw)
            if isinstance(payload, dict):
                given = payload.get("created_by")
                if given is None or isinstance(given, str):  # anything else is the model's 422
                    payload = {**payload, "created_by": acting(client, given)}
            now = datetime.now(UTC)
            body, (starts, ends) = requested_window(SilenceRequest, payload, now, "invalid silence")
            silence = Silence(
                silence_id=uuid.uuid4().hex,
                matchers=body.matchers,
                starts_at=starts,
                ends_at=ends,
                created_by=body.created_by,
                comment=body.comment,
                created_at=now,
            )
            await run_in_threadpool(db.add_silence, deps.engine, silence)
        except HttpError as exc:
            return fail(exc, "api")
        log.info("silence_created", silence_id=silence.silence_id, created_by=silence.created_by, by=client.name)
        return JSONResponse(silence_json(silence, now), status_code=201)

    async def list_silences(request: Request) -> Response:
        try:
            api_client(request)
            wanted = request.query_params.get("state")
            if wanted not in (None, "active", "pending", "expired"):
                raise HttpError(422, "state must be one of active, pending, expired")
            silences = await run_in_threadpool(db.list_silences, deps.engine)
        except HttpError as exc:
            return fail(exc, "api")
        now = datetime.now(UTC)
        return JSONResponse(
            {"silences": [silence_json(s, now) for s in silences if wanted is None or s.state(now) == wanted]}
        )

    async def get_silence(request: Request) -> Response:
        sid = request.path_params["silence_id"]
        try:
            api_client(request)
            silence = await run_in_threadpool(db.get_silence, deps.engine, sid)
            if silence is None:
                raise HttpError(404, f"no silence {sid!r}")
        except HttpError as exc:
            return fail(exc, "api")
        return JSONResponse(silence_json(silence, datetime.now(UTC)))

    async def expire_silence(request: Request) -> Response:
        sid = request.path_params["silence_id"]
        now = datetime.now(UTC)
        try:
            client = api_client(request, "responder")
            silence = await run_in_threadpool(db.expire_silence, deps.engine, sid, now)
            if silence is None:
                raise HttpError(404, f"no silence {sid!r}")
        except HttpError as exc:
            return fail(exc, "api")
        log.info("silence_expired", silence_id=sid, by=client.name)
        return JSONResponse(silence_json(silence, now))

    def command_endpoint() -> Callable[[Request], Any]:
        async def handler(request: Request) -> Response:
            ticket_id = request.path_params["ticket_id"]
            try:
                client = api_client(request, "responder")
                action = VERBS.get(request.path_params["verb"])
                if action is None:
                    raise HttpError(404, f"unknown action {request.path_params['verb']!r}; one of {sorted(VERBS)}")
                raw = await read_body(request, deps.max_body_bytes)
                trace_id = request.headers.get("x-trace-id") or new_trace_id()
                try:
                    body = CommandBody.model_validate(parse_json(raw) if raw.strip() else {})
                    cmd = Command(
                        command_id=uuid.uuid4().hex,
                        ticket_id=ticket_id,
                        action=action,
                        actor=acting(client, body.actor),
                        via=client.name if body.actor not in (None, client.name) else None,
                        issued_at=datetime.now(UTC),
                        trace_id=trace_id,
                        **body.model_dump(exclude={"actor"}),
                    )
                except ValidationError as exc:
                    raise HttpError(422, "invalid command", describe_validation_error(exc)) from exc
                found = await run_in_threadpool(db.get_ticket, deps.engine, ticket_id)
                if found is None:
                    raise HttpError(404, f"no ticket {ticket_id!r}")
                await publish_commands([cmd], trace_id)
            except HttpError as exc:
                return fail(exc, "api")
            log.info("command_accepted", ticket_id=ticket_id, action=action.value, actor=cmd.actor, by=client.name)
            return JSONResponse(
                {"status": "accepted", "command_id": cmd.command_id, "ticket_id": ticket_id, "action": action},
                status_code=202,
            )

        return handler

    async def current_teams() -> TeamsConfig:
        if deps.teams is None:
            return TeamsConfig()
        await run_in_threadpool(deps.teams.poll)
        return deps.teams.current

    def at_param(request: Request) -> datetime:
        text = request.query_params.get("at")
        if not text:
            return datetime.now(UTC)
        try:
            value = bounded_time(datetime.fromisoformat(text))
        except ValueError as exc:
            raise HttpError(422, f"'at' is not an ISO 8601 time between 1970 and 9000: {text[:64]!r}") from exc
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    async def who_is_on_call(request: Request) -> Response:
        try:
            api_client(request)
            at = at_param(request)
            teams = await current_teams()
            overrides = await run_in_threadpool(db.list_overrides, deps.engine, since=at)
        except HttpError as exc:
            return fail(exc, "api")
        return JSONResponse(
            {
                "at": at.isoformat(),
                "teams": [
                    {"team": name, **on_call_json(on_call(name, teams, overrides, at))} for name in sorted(teams.teams)
                ],
            }
        )

    async def team_on_call(request: Request) -> Response:
        team = request.path_params["team"]
        try:
            api_client(request)
            at = at_param(request)
            teams = await current_teams()
            spec = teams.teams.get(team)
            if spec is None:
                raise HttpError(404, f"no team {team!r} in teams.yaml")
            overrides = await run_in_threadpool(db.list_overrides, deps.engine, team=team, since=at)
        except HttpError as exc:
            return fail(exc, "api")
        shifts = upcoming_shifts(spec.rotation, spec.order(), at, 4) if spec.rotation else []
        return JSONResponse(
            {
                "team": team,
                "at": at.isoformat(),
                "members": spec.members,
                "lead": spec.lead,
                "on_call": on_call_json(on_call(team, teams, overrides, at)),
                "overrides": [o.model_dump(mode="json") for o in overrides],
                "rotation": [
                    {"person": x.person, "starts_at": x.starts_at.isoformat(), "ends_at": x.ends_at.isoformat()}
                    for x in shifts
                ],
            }
        )

    async def add_override(request: Request) -> Response:
        team = request.path_params["team"]
        now = datetime.now(UTC)
        try:
            client = api_client(request, "responder")
            teams = await current_teams()
            if team not in teams.teams:
                raise HttpError(404, f"no team {team!r} in teams.yaml")
            payload = parse_json(await read_body(request, deps.max_body_bytes))
            body, (starts, ends) = requested_window(OverrideRequest, payload, now, "invalid override")
            if body.person not in teams.people:
                raise HttpError(
                    422, "invalid override", [{"field": "person", "error": f"{body.person!r} is not in people"}]
                )
            override = Override(
                override_id=uuid.uuid4().hex,
                team=team,
                person=body.person,
                starts_at=starts,
                ends_at=ends,
                created_by=acting(client, body.created_by),
                reason=body.reason,
                created_at=now,
            )
            await run_in_threadpool(db.add_override, deps.engine, override)
        except HttpError as exc:
            return fail(exc, "api")
        log.info("oncall_override_added", team=team, person=override.person, override_id=override.override_id)
        return JSONResponse(override.model_dump(mode="json"), status_code=201)

    async def remove_override(request: Request) -> Response:
        team, oid = request.path_params["team"], request.path_params["override_id"]
        try:
            client = api_client(request, "responder")
            removed = await run_in_threadpool(db.delete_override, deps.engine, team, oid)
            if removed is None:
                raise HttpError(404, f"no override {oid!r} for team {team!r}")
        except HttpError as exc:
            return fail(exc, "api")
        log.info("oncall_override_removed", team=team, override_id=oid, by=client.name)
        return JSONResponse(removed.model_dump(mode="json"))

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> Response:
        if not await deps.publisher.check():
            return JSONResponse({"status": "not ready", "kafka": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ready"})

    spec = document(deps.config)

    async def openapi_endpoint(_request: Request) -> Response:
        return JSONResponse(spec)

    async def metrics_endpoint(_request: Request) -> Response:
        body = await asyncio.to_thread(generate_latest, deps.registry)  # UnresolvedTickets queries SQL
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def deliver_mail(mail: Mail) -> str:
        """What a received mail becomes, published: a reply on the ticket its subject names (when there is such a
        ticket), else a feedback ticket. Raises when the broker did not take it (the SMTP answer is then 451)."""
        trace_id, now = new_trace_id(), datetime.now(UTC)
        found = await run_in_threadpool(db.get_ticket, deps.engine, mail.ticket_id) if mail.ticket_id else None
        if mail.ticket_id is not None and found is not None:
            await publish_commands([reply_command(mail, mail.ticket_id, now, trace_id)], trace_id)
            return "reply"
        if deps.config.mail is None:
            raise HttpError(503, "mail is not configured")
        await publish_events([mail_event(mail, deps.config.mail, now, trace_id)], trace_id)
        return "feedback"

    routes = [
        Route("/api/v1/integrations/{name}", receive, methods=["POST", "PUT"]),
        Route("/v2/enqueue", enqueue, methods=["POST"]),
        Route("/v2/change/enqueue", change_enqueue, methods=["POST"]),
        Route("/api/v1/heartbeats/{name}", heartbeat, methods=["POST", "PUT"]),
        Route("/v2/alerts", opsgenie_endpoint("create"), methods=["POST"]),
        Route("/v2/alerts/{identifier}/close", opsgenie_endpoint("close"), methods=["POST"]),
        Route("/v2/alerts/{identifier}/acknowledge", opsgenie_endpoint("acknowledge"), methods=["POST"]),
        Route("/api/v1/tickets", list_tickets, methods=["GET"]),
        Route("/api/v1/tickets/{ticket_id}", get_ticket, methods=["GET"]),
        Route("/api/v1/tickets/{ticket_id}/{verb}", command_endpoint(), methods=["POST"]),
        Route("/api/v1/silences", create_silence, methods=["POST"]),
        Route("/api/v1/silences", list_silences, methods=["GET"]),
        Route("/api/v1/silences/{silence_id}", get_silence, methods=["GET"]),
        Route("/api/v1/silences/{silence_id}", expire_silence, methods=["DELETE"]),
        Route("/api/v1/oncall", who_is_on_call, methods=["GET"]),
        Route("/api/v1/oncall/{team}", team_on_call, methods=["GET"]),
        Route("/api/v1/oncall/{team}/overrides", add_override, methods=["POST"]),
        Route("/api/v1/oncall/{team}/overrides/{override_id}", remove_override, methods=["DELETE"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
        Route("/openapi.json", openapi_endpoint, methods=["GET"]),
        Route("/feedback/{project}", feedback_form, methods=["GET", "POST"]),
    ]
    routes += action_routes(deps, publish, metrics.rejected)
    routes += delivery_routes(deps, api_client, fail)
    routes += survey_routes(deps, publish_commands, read_form, api_client, fail, limiter)
    routes += solved_routes(deps, publish_commands, read_form, limiter)
    app = Starlette(routes=routes, middleware=[Middleware(RequestIds)])
    app.state.deliver_mail = deliver_mail
    return app
