"""Dead-lettered notifications over the REST API: list them, and send them again.

``GET /api/v1/deliveries?status=failed[&limit=N]`` lists the notifications the notifier gave up (kept in the
outbox, shared/store/outbox.py, with status ``failed``), oldest planned first: id, ticket, team, channel kind, target
(the channel entry's name, or an email address), message kind, attempts, the last error, when it was planned and
its subject. Never the message's text, its action links or any URL: a subject or an error that carries a URL
shows ``<url>`` in its place.

``POST /api/v1/deliveries/{notification_id}/redrive`` marks a failed notification for sending again (202); the
notifier takes it back within seconds and sends it through its lane as a new one (attempts from zero). 404 when
there is no failed notification with that id (unknown, delivered, or already being redriven).

Both need an API client's bearer token, as every /api/v1 route.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.intake.edge import HttpError
from services.intake.shell import Door
from shared.infra.logging import get_logger
from shared.store import outbox
from shared.store.db import as_utc

log = get_logger(__name__)

DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
STATUSES = (outbox.FAILED,)
"""The listable statuses (pending ones are the notifier's business)."""

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+")


def without_urls(text: str) -> str:
    """``text`` with every URL (scheme://...) replaced by ``<url>``: a webhook URL is a secret, a link acts."""
    return _URL.sub("<url>", text)


def delivery_json(item: outbox.OutboxItem) -> dict[str, Any]:
    """A failed notification for operators: what, to whom, why; no text, links or URLs."""
    created = as_utc(item.created_at) or item.created_at
    return {
        "notification_id": item.notification_id,
        "ticket_id": item.ticket_id,
        "team": item.team,
        "channel": item.channel,
        "target": item.target,
        "kind": item.kind,
        "attempts": item.attempts,
        "error": without_urls(item.last_error),
        "created_at": created.isoformat(),
        "subject": without_urls(str(item.payload.get("subject", ""))),
    }


def list_params(query: dict[str, str]) -> tuple[str, int]:
    """(status, limit) of a listing request; ValueError says what is wrong."""
    status = query.get("status", outbox.FAILED)
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    try:
        limit = int(query.get("limit", str(DEFAULT_LIMIT)))
    except ValueError as exc:
        raise ValueError("limit must be an integer") from exc
    return status, min(max(limit, 1), MAX_LIMIT)


class DeliveriesApi(Door):
    """The /api/v1/deliveries routes: failed notifications listed, and one sent again."""

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/deliveries", self.list_failed, methods=["GET"]),
            Route("/api/v1/deliveries/{notification_id}/redrive", self.redrive, methods=["POST"]),
        ]

    async def list_failed(self, request: Request) -> Response:
        edge = self.edge
        try:
            edge.api_client(request, "viewer")
            try:
                _status, limit = list_params(dict(request.query_params))
            except ValueError as exc:
                raise HttpError(422, str(exc)) from exc
            items = await run_in_threadpool(outbox.failed, self.deps.engine, limit)
        except HttpError as exc:
            return edge.fail(exc, "api")
        return JSONResponse({"deliveries": [delivery_json(i) for i in items]})

    async def redrive(self, request: Request) -> Response:
        edge = self.edge
        nid = request.path_params["notification_id"]
        try:
            client = edge.api_client(request, "responder")
            done = await run_in_threadpool(outbox.redrive, self.deps.engine, nid, datetime.now(UTC))
            if not done:
                raise HttpError(404, f"no failed delivery {nid!r}")
        except HttpError as exc:
            return edge.fail(exc, "api")
        log.info("delivery_redrive_requested", notification_id=nid, by=client.name)
        return JSONResponse({"status": "redriving", "notification_id": nid}, status_code=202)
