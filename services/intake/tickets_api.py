"""The ticket REST API: list, one ticket with its timeline and notifications, and commands on it (acknowledge,
resolve, ...) as the authenticated client or a person it may act for."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.intake.edge import (
    VERBS,
    CommandBody,
    HttpError,
    iso_time,
    parse_json,
    read_body,
    trace_id_of,
)
from services.intake.shell import Door
from shared.events import Command
from shared.infra.logging import get_logger
from shared.store import db
from shared.streaming.codec import describe_validation_error

log = get_logger(__name__)


def ticket_json(row: db.TicketRow) -> dict[str, Any]:
    """A ticket row as JSON: every time in ISO 8601 with its offset."""
    return {k: iso_time(v) if isinstance(v, datetime) else v for k, v in row.model_dump().items()}


MAX_OFFSET = 1_000_000_000


class TicketsApi(Door):
    """Tickets and commands."""

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/tickets", self.list_tickets, methods=["GET"]),
            Route("/api/v1/tickets/{ticket_id}", self.get_ticket, methods=["GET"]),
            Route("/api/v1/tickets/{ticket_id}/{verb}", self.command, methods=["POST"]),
        ]

    async def list_tickets(self, request: Request) -> Response:
        try:
            self.edge.api_client(request)
            q = request.query_params
            try:
                limit = min(max(int(q.get("limit", "100")), 1), 1000)
                offset = max(int(q.get("offset", "0")), 0)
            except ValueError as exc:
                raise HttpError(422, "limit and offset must be integers") from exc
            if offset > MAX_OFFSET:  # past any list, and past what SQLite's integers hold (a 500 before)
                raise HttpError(422, f"offset must be at most {MAX_OFFSET:,}")
            rows = await run_in_threadpool(
                db.list_tickets, self.deps.engine, state=q.get("state"), team=q.get("team"), limit=limit, offset=offset
            )
        except HttpError as exc:
            return self.edge.fail(exc, "api")
        return JSONResponse({"tickets": [ticket_json(r) for r in rows]})

    async def get_ticket(self, request: Request) -> Response:
        try:
            self.edge.api_client(request)
            found = await run_in_threadpool(db.get_ticket, self.deps.engine, request.path_params["ticket_id"])
            if found is None:
                raise HttpError(404, f"no ticket {request.path_params['ticket_id']!r}")
        except HttpError as exc:
            return self.edge.fail(exc, "api")
        row, timeline = found
        body = ticket_json(row)
        body["timeline"] = [
            {
                "version": t.version,
                "change": t.change,
                "actor": t.actor,
                "via": t.via,
                "reason": t.reason,
                "at": iso_time(t.at),
            }
            for t in timeline
        ]
        deliveries = await run_in_threadpool(db.list_deliveries, self.deps.engine, row.ticket_id)
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

    async def command(self, request: Request) -> Response:
        ticket_id = request.path_params["ticket_id"]
        try:
            client = self.edge.api_client(request, "responder")
            action = VERBS.get(request.path_params["verb"])
            if action is None:
                raise HttpError(404, f"unknown action {request.path_params['verb']!r}; one of {sorted(VERBS)}")
            raw = await read_body(request, self.deps.max_body_bytes)
            trace_id = trace_id_of(request)
            try:
                body = CommandBody.model_validate(parse_json(raw) if raw.strip() else {})
                cmd = Command(
                    command_id=uuid.uuid4().hex,
                    ticket_id=ticket_id,
                    action=action,
                    actor=self.edge.acting(client, body.actor),
                    via=client.name if body.actor not in (None, client.name) else None,
                    issued_at=datetime.now(UTC),
                    trace_id=trace_id,
                    **body.model_dump(exclude={"actor"}),
                )
            except ValidationError as exc:
                raise HttpError(422, "invalid command", describe_validation_error(exc)) from exc
            found = await run_in_threadpool(db.get_ticket, self.deps.engine, ticket_id)
            if found is None:
                raise HttpError(404, f"no ticket {ticket_id!r}")
            await self.edge.publish_commands([cmd], trace_id)
        except HttpError as exc:
            return self.edge.fail(exc, "api")
        log.info("command_accepted", ticket_id=ticket_id, action=action.value, actor=cmd.actor, by=client.name)
        return JSONResponse(
            {"status": "accepted", "command_id": cmd.command_id, "ticket_id": ticket_id, "action": action},
            status_code=202,
        )
