"""PagerDuty's doors at PagerDuty's paths: Events API v2 (``/v2/enqueue``) and change events
(``/v2/change/enqueue``), answered as PagerDuty answers; the routing key names and authenticates the integration."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.intake.config import Integration
from services.intake.edge import (
    HttpError,
    parse_json,
    read_body,
    trace_id_of,
)
from services.intake.formats import pagerduty
from services.intake.limits import retry_after
from services.intake.shell import Door
from shared.infra.logging import get_logger, new_trace_id
from shared.store import db
from shared.streaming.codec import describe_validation_error

log = get_logger(__name__)


class PagerDutyIn(Door):
    """PagerDuty Events v2 and change events."""

    def routes(self) -> list[Route]:
        return [
            Route("/v2/enqueue", self.enqueue, methods=["POST"]),
            Route("/v2/change/enqueue", self.change_enqueue, methods=["POST"]),
        ]

    async def sender(self, request: Request) -> tuple[bytes, Any, Integration] | Response:
        """A PagerDuty request's body, parsed, and the integration its routing key names; or PagerDuty's answer
        refusing it."""
        try:
            raw = await read_body(request, self.deps.max_body_bytes)
            payload = parse_json(raw)
        except HttpError as exc:
            self.metrics.rejected.labels(reason="malformed").inc()
            return JSONResponse({"status": "invalid event", "message": exc.error}, status_code=exc.status)
        key = pagerduty.routing_key(payload) or ""
        integration = next(
            (i for i in self.deps.config.integrations if i.format == "pagerduty" and i.accepts(key)),
            None,
        )
        if integration is None:
            self.metrics.rejected.labels(reason="unauthorized").inc()
            return JSONResponse({"status": "invalid event", "message": "unknown routing_key"}, status_code=401)
        return raw, payload, integration

    def invalid(self, exc: ValidationError) -> Response:
        """PagerDuty's answer to an event that does not fit its schema: 400 with each field's error."""
        self.metrics.rejected.labels(reason="invalid").inc()
        errors = [f"{p['field']}: {p['error']}" for p in describe_validation_error(exc)]
        return JSONResponse({"status": "invalid event", "message": "Event object is invalid", "errors": errors}, 400)

    async def change_enqueue(self, request: Request) -> Response:
        """PagerDuty's change events (``/v2/change/enqueue``): a comment on each open ticket of the integration."""
        found = await self.sender(request)
        if isinstance(found, Response):
            return found
        raw, payload, integration = found
        try:
            self.edge.limited(integration)
            change = pagerduty.ChangeEvent.model_validate(payload)
            tickets = await run_in_threadpool(db.unresolved_from, self.deps.engine, integration.name)
            trace_id, now = new_trace_id(), datetime.now(UTC)
            comments = pagerduty.change_comments(change, raw, integration.name, tickets, now, trace_id)
            await self.edge.publish_commands(comments, trace_id)
        except ValidationError as exc:
            return self.invalid(exc)
        except HttpError as exc:
            return self.edge.fail(exc, "rate_limited" if exc.status == 429 else "unavailable")
        log.info("change_event_recorded", integration=integration.name, tickets=len(comments))
        return JSONResponse({"status": "success", "message": "Change event processed"}, status_code=202)

    async def enqueue(self, request: Request) -> Response:
        """PagerDuty Events API v2, at PagerDuty's path: the routing key names (and authenticates) the integration."""
        found = await self.sender(request)
        if isinstance(found, Response):
            return found
        raw, payload, integration = found
        try:
            self.edge.limited(integration)
        except HttpError as exc:  # PagerDuty's own answer when throttled: 429
            self.metrics.rejected.labels(reason="rate_limited").inc()
            wait = {"Retry-After": retry_after(exc.retry_after_s or 1.0)}
            return JSONResponse({"status": "throttled", "message": exc.error}, status_code=429, headers=wait)
        trace_id = trace_id_of(request)
        try:
            events = pagerduty.to_events(
                payload, integration=integration.name, raw=raw, received_at=datetime.now(UTC), trace_id=trace_id
            )
        except ValidationError as exc:
            return self.invalid(exc)
        try:
            await self.edge.publish_events(events, trace_id)
        except HttpError as exc:
            return self.edge.fail(exc, "unavailable")
        self.metrics.accepted.labels(integration=integration.name).inc(len(events))
        dedup_key = pagerduty.sender_key(payload.get("dedup_key"), raw)  # as PagerDuty answers (to_events read it)
        return JSONResponse(
            {"status": "success", "message": "Event processed", "dedup_key": dedup_key}, status_code=202
        )
