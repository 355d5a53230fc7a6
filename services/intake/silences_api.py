"""The silences API (as Alertmanager's): create (responder or admin), list, get, expire."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.intake.edge import (
    HttpError,
    parse_json,
    read_body,
)
from services.intake.shell import Door, requested_window
from shared.infra.logging import get_logger
from shared.rules.silences import Silence, SilenceRequest
from shared.store import db

log = get_logger(__name__)


def silence_json(silence: Silence, now: datetime) -> dict[str, Any]:
    data = silence.model_dump(mode="json")
    data["state"] = silence.state(now)
    return data


class SilencesApi(Door):
    """Silences."""

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/silences", self.create, methods=["POST"]),
            Route("/api/v1/silences", self.query, methods=["GET"]),
            Route("/api/v1/silences/{silence_id}", self.get, methods=["GET"]),
            Route("/api/v1/silences/{silence_id}", self.expire, methods=["DELETE"]),
        ]

    async def create(self, request: Request) -> Response:
        try:
            client = self.edge.api_client(request, "responder")
            raw = await read_body(request, self.deps.max_body_bytes)
            payload = parse_json(raw)
            if isinstance(payload, dict):
                given = payload.get("created_by")
                if given is None or isinstance(given, str):  # anything else is the model's 422
                    payload = {**payload, "created_by": self.edge.acting(client, given)}
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
            await run_in_threadpool(db.add_silence, self.deps.engine, silence)
        except HttpError as exc:
            return self.edge.fail(exc, "api")
        log.info("silence_created", silence_id=silence.silence_id, created_by=silence.created_by, by=client.name)
        return JSONResponse(silence_json(silence, now), status_code=201)

    async def query(self, request: Request) -> Response:
        try:
            self.edge.api_client(request)
            wanted = request.query_params.get("state")
            if wanted not in (None, "active", "pending", "expired"):
                raise HttpError(422, "state must be one of active, pending, expired")
            silences = await run_in_threadpool(db.list_silences, self.deps.engine)
        except HttpError as exc:
            return self.edge.fail(exc, "api")
        now = datetime.now(UTC)
        return JSONResponse(
            {"silences": [silence_json(s, now) for s in silences if wanted is None or s.state(now) == wanted]}
        )

    async def get(self, request: Request) -> Response:
        sid = request.path_params["silence_id"]
        try:
            self.edge.api_client(request)
            silence = await run_in_threadpool(db.get_silence, self.deps.engine, sid)
            if silence is None:
                raise HttpError(404, f"no silence {sid!r}")
        except HttpError as exc:
            return self.edge.fail(exc, "api")
        return JSONResponse(silence_json(silence, datetime.now(UTC)))

    async def expire(self, request: Request) -> Response:
        sid = request.path_params["silence_id"]
        now = datetime.now(UTC)
        try:
            client = self.edge.api_client(request, "responder")
            silence = await run_in_threadpool(db.expire_silence, self.deps.engine, sid, now)
            if silence is None:
                raise HttpError(404, f"no silence {sid!r}")
        except HttpError as exc:
            return self.edge.fail(exc, "api")
        log.info("silence_expired", silence_id=sid, by=client.name)
        return JSONResponse(silence_json(silence, now))
