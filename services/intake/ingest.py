"""The alert doors of intake: every integration's webhook (``/api/v1/integrations/<name>``, by its format's parser)
and heartbeats (``/api/v1/heartbeats/<name>``). Answers 202 only after the broker acknowledged."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.intake.config import Integration
from services.intake.edge import (
    HttpError,
    bearer_token,
    parse_json,
    read_body,
    trace_id_of,
)
from services.intake.formats.common import (
    EventsTooLargeError,
    ParsedBatch,
    encoded,
    watchdogs_as_beats,
    with_severity_words,
    within_limits,
)
from services.intake.formats.registry import ALERTMANAGER_SHAPED, LEAN_PARSERS, PARSERS, truncated_alerts
from services.intake.shell import Door
from shared.events import beat_event
from shared.infra.logging import bind_ids, get_logger
from shared.streaming.codec import describe_validation_error

log = get_logger(__name__)


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
    kept = within_limits(encoded(e) for e in events)
    return ParsedBatch(kept, unknown_words, truncated_alerts(integration.format, payload))


class AlertsIn(Door):
    """An integration's events and heartbeats, authenticated by its token (and signature, when it signs)."""

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/integrations/{name}", self.receive, methods=["POST", "PUT"]),
            Route("/api/v1/heartbeats/{name}", self.heartbeat, methods=["POST", "PUT"]),
        ]

    async def receive(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            token = bearer_token(request)
            integration = self.deps.config.integration(name)
            if integration is None or not integration.accepts(token):
                raise HttpError(401, "invalid token for this integration")
            self.edge.limited(integration)
            raw = await read_body(request, self.deps.max_body_bytes)
            self.edge.check_signature(integration, request, raw)
            trace_id = trace_id_of(request)
            now = datetime.now(UTC)
            try:
                batch = lean_batch(integration, raw, now, trace_id) or pydantic_batch(integration, raw, now, trace_id)
            except EventsTooLargeError as exc:
                raise HttpError(413, str(exc)) from exc
            events = batch.events
            await self.edge.publish_encoded(events, trace_id)
        except HttpError as exc:
            return self.edge.fail(
                exc,
                {400: "malformed", 401: "unauthorized", 413: "oversize", 422: "invalid", 429: "rate_limited"}.get(
                    exc.status, "unavailable"
                ),
            )
        self.metrics.accepted.labels(integration=integration.name).inc(len(events))
        bind_ids(trace_id=trace_id)
        log.info("events_accepted", integration=integration.name, count=len(events))
        answer: dict[str, Any] = {
            "status": "accepted",
            "trace_id": trace_id,
            "events": [{"event_id": e.event_id, "dedup_key": e.dedup_key, "status": e.status} for e in events],
        }
        truncated = batch.truncated
        if truncated:
            self.metrics.truncated.labels(integration=integration.name).inc(truncated)
            log.warning("alerts_truncated_by_sender", integration=integration.name, truncated=truncated)
            answer["truncated_alerts"] = truncated
        if batch.unknown_words:
            self.metrics.unmapped_severity.labels(integration=integration.name).inc(len(batch.unknown_words))
            log.info("severity_words_unmapped", integration=integration.name, words=sorted(set(batch.unknown_words)))
        return Response(orjson.dumps(answer), 202, media_type="application/json")  # JSONResponse's bytes, faster

    async def heartbeat(self, request: Request) -> Response:
        """``POST /api/v1/heartbeats/<name>``: one beat, with the token of the integration that declares it."""
        name = request.path_params["name"]
        try:
            token = bearer_token(request)
            integration = self.deps.config.heartbeat(name)
            if integration is None or integration.heartbeat is None or not integration.accepts(token):
                raise HttpError(401, "invalid token for this heartbeat")
            self.edge.limited(integration)
            raw = await read_body(request, self.deps.max_body_bytes)  # a body, if any, is not kept
            self.edge.check_signature(integration, request, raw)  # an integration that signs signs its beats too
            trace_id = trace_id_of(request)
            hb, now = integration.heartbeat, datetime.now(UTC)
            grace = hb.every if hb.grace is None else hb.grace
            beat = beat_event(name, integration.name, hb.every, grace, now, uuid.uuid4().hex, trace_id)
            await self.edge.publish_events([beat], trace_id)
        except HttpError as exc:
            return self.edge.fail(
                exc, {401: "unauthorized", 413: "oversize", 429: "rate_limited"}.get(exc.status, "unavailable")
            )
        due = now + hb.every + grace
        return JSONResponse(
            {"status": "accepted", "heartbeat": name, "missing_after": due.isoformat()}, status_code=202
        )
