"""Opsgenie's alert API at Opsgenie's paths (create; close and acknowledge by alias), as a migration path: the
GenieKey names and authenticates the integration, and the answers are Opsgenie's."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.intake.edge import (
    HttpError,
    parse_json,
    read_body,
    trace_id_of,
)
from services.intake.formats import opsgenie
from services.intake.shell import Door
from shared.streaming.codec import describe_validation_error


class OpsgenieIn(Door):
    """Opsgenie's alert API subset."""

    def routes(self) -> list[Route]:
        return [
            Route("/v2/alerts", self.create, methods=["POST"]),
            Route("/v2/alerts/{identifier}/close", self.close, methods=["POST"]),
            Route("/v2/alerts/{identifier}/acknowledge", self.acknowledge, methods=["POST"]),
        ]

    async def create(self, request: Request) -> Response:
        return await self.handle("create", request)

    async def close(self, request: Request) -> Response:
        return await self.handle("close", request)

    async def acknowledge(self, request: Request) -> Response:
        return await self.handle("acknowledge", request)

    async def handle(self, verb: opsgenie.Verb, request: Request) -> Response:
        started = time.perf_counter()
        trace_id = trace_id_of(request)

        def answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
            took = round(time.perf_counter() - started, 3)
            return JSONResponse({**body, "took": took, "requestId": trace_id}, status_code=status, headers=headers)

        key = opsgenie.genie_key(request.headers.get("authorization"))
        integration = next(
            (i for i in self.deps.config.integrations if i.format == "opsgenie" and i.accepts(key or "")),
            None,
        )
        if integration is None:
            self.metrics.rejected.labels(reason="unauthorized").inc()
            return answer(401, {"message": "Could not authenticate: give Authorization: GenieKey <key>"})
        alias = request.path_params.get("identifier")
        try:
            self.edge.limited(integration)
            if alias is not None and request.query_params.get("identifierType", "id") != "alias":
                raise HttpError(422, "identifierType must be alias: ticketloop knows alerts by their alias")
            raw = await read_body(request, self.deps.max_body_bytes)
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
            await self.edge.publish_events(events, trace_id)
        except HttpError as exc:
            reason = {400: "malformed", 413: "oversize", 422: "invalid", 429: "rate_limited"}.get(exc.status)
            self.metrics.rejected.labels(reason=reason or "unavailable").inc()
            body: dict[str, Any] = {"message": exc.error}
            if exc.problems:
                body["errors"] = {p["field"]: p["error"] for p in exc.problems}
            wait = exc.response().headers.get("retry-after")
            return answer(exc.status, body, {"Retry-After": wait} if wait else None)
        self.metrics.accepted.labels(integration=integration.name).inc(len(events))
        return answer(202, {"result": "Request will be processed"})
