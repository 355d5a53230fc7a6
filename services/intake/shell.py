"""What intake's doors and APIs share: the dependencies and metrics, and the checks and steps every handler takes —
a refusal counted (``fail``), an integration's rate limit, its signature, publishing (202 only after the broker's
ack), the authenticated API client and whom it acts as, a posted form, teams.yaml as it is now. One ``Edge`` per
app (services/intake/api.py makes it and hands it to each door's class)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.intake.config import ApiClient, Integration, Role, may_act_for, role_allows
from services.intake.edge import (
    HttpError,
    IntakeDeps,
    bearer_token,
    read_body,
)
from services.intake.formats.common import (
    Encoded,
    EventsTooLargeError,
    encoded,
    within_limits,
)
from services.intake.formats.registry import VERIFIERS
from services.intake.limits import Limiter
from services.intake.metrics import IntakeMetrics
from services.intake.publisher import PublishTooLargeError, PublishUnavailableError, Record
from shared.events import MAX_EVENT_BYTES, Command, InboundEvent
from shared.infra.logging import get_logger, make_headers
from shared.rules.oncall import TeamsConfig
from shared.rules.windows import TimeWindowRequest
from shared.streaming.codec import describe_validation_error

log = get_logger(__name__)


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


class Edge:
    def __init__(self, deps: IntakeDeps, metrics: IntakeMetrics) -> None:
        self.deps = deps
        self.metrics = metrics
        self.limiter = Limiter(shared=deps.shared_arrivals)

    def fail(self, exc: HttpError, reason: str) -> JSONResponse:
        self.metrics.rejected.labels(reason=reason).inc()
        return exc.response()

    def limited(self, integration: Integration) -> None:
        """429 when this integration is over its rate limit (counted as one request when not)."""
        wait = self.limiter.wait(integration.name, integration.rate_limit, time.monotonic())
        if wait > 0 and integration.rate_limit is not None:
            raise HttpError(
                429,
                f"rate limit of integration {integration.name!r} reached: {integration.rate_limit.describe()}",
                retry_after_s=wait,
            )

    def check_signature(self, integration: Integration, request: Request, raw: bytes) -> None:
        """401 unless the request carries the signature its integration's format asks for (when it signs)."""
        verify = VERIFIERS.get(integration.format)
        refused = verify(integration, request.headers, raw, datetime.now(UTC)) if verify is not None else None
        if refused is not None:
            raise HttpError(401, f"invalid signature: {refused}")

    async def publish(self, records: list[Record]) -> None:
        started = time.perf_counter()
        for i, r in enumerate(records):  # what no broker takes is the sender's 413 (events are checked as made)
            if len(r.value) > MAX_EVENT_BYTES:
                raise HttpError(
                    413, f"record {i} of this request is {len(r.value):,} bytes; at most {MAX_EVENT_BYTES:,}"
                )
        try:
            await self.deps.publisher.publish(records)
        except PublishUnavailableError as exc:  # a 503: logged with its traceback, under the request's id
            log.warning("publish_unavailable", error=str(exc), records=len(records), exc_info=exc)
            raise HttpError(503, "the event broker did not acknowledge; retry later") from exc
        except PublishTooLargeError as exc:
            raise HttpError(413, str(exc)) from exc
        self.metrics.publish_seconds.observe(time.perf_counter() - started)

    async def publish_encoded(self, events: list[Encoded], trace_id: str) -> None:
        """Each event to ``events``, keyed by its dedup key, with its ids in the headers (``make_headers``'s,
        written out: this runs for every alert)."""
        topic, trace = self.deps.topics.events.name, trace_id.encode()
        await self.publish(
            [
                Record(topic, e.dedup_key, e.value, [("trace_id", trace), ("event_id", e.event_id.encode())])
                for e in events
            ]
        )

    async def publish_events(self, events: list[InboundEvent], trace_id: str) -> None:
        try:
            kept = within_limits(encoded(e) for e in events)
        except EventsTooLargeError as exc:
            raise HttpError(413, str(exc)) from exc
        await self.publish_encoded(kept, trace_id)

    async def publish_commands(self, commands: list[Command], trace_id: str) -> None:
        """Each command to ``commands``, keyed by its ticket, with its ids in the headers (fields at None left
        out: a command reads as it did before ``via``)."""
        await self.publish(
            [
                Record(
                    self.deps.topics.commands.name,
                    c.ticket_id,
                    c.__pydantic_serializer__.to_json(c, exclude_none=True),
                    make_headers(trace_id=trace_id, ticket_id=c.ticket_id),
                )
                for c in commands
            ]
        )

    def api_client(self, request: Request, needed: Role = "viewer") -> ApiClient:
        """The authenticated API client, if its role allows what this endpoint does (401 / 403)."""
        client = self.deps.config.api_client_for(bearer_token(request))
        if client is None:
            raise HttpError(401, "invalid API token")
        if not role_allows(client.role, needed):
            raise HttpError(403, f"API client {client.name!r} has role {client.role}; this needs {needed}")
        return client

    def acting(self, client: ApiClient, person: str | None) -> str:
        """Who is recorded as acting: the client itself, or a person it may act for (403 otherwise)."""
        if person is None or person == client.name:
            return client.name
        if not may_act_for(client.acts_for, client.name, person):
            raise HttpError(403, f"API client {client.name!r} may not act for {person!r} (acts_for in intake.yaml)")
        return person

    async def read_form(self, request: Request) -> dict[str, str]:
        """The posted form's fields (the last of each name), within the body limit; anything else is empty."""
        try:
            raw = await read_body(request, self.deps.max_body_bytes)
        except HttpError:
            return {}
        try:
            fields = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=50)
        except ValueError:  # more fields than any of our forms has: read as an empty form (then a 4xx page)
            return {}
        return {k: v[-1] for k, v in fields.items() if v}

    async def current_teams(self) -> TeamsConfig:
        if self.deps.teams is None:
            return TeamsConfig()
        await run_in_threadpool(self.deps.teams.poll)
        return self.deps.teams.current


class Door:
    """A door's or API's handlers (a class per concept, services/intake/*_in.py and *_api.py): each a named method
    taking the request, over the app's one ``Edge``."""

    def __init__(self, edge: Edge) -> None:
        self.edge = edge
        self.deps = edge.deps
        self.metrics = edge.metrics

    def routes(self) -> list[Route]:
        raise NotImplementedError
