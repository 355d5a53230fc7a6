"""The on-call API: who is on call (now or ``?at=``), a team's rotation, and overrides (responder or admin)."""

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
from shared.events import bounded_time
from shared.infra.logging import get_logger
from shared.rules.oncall import OnCall, Override, OverrideRequest, on_call, upcoming_shifts
from shared.store import db

log = get_logger(__name__)


def on_call_json(found: OnCall | None) -> dict[str, Any]:
    if found is None:
        return {"person": None, "source": None, "until": None, "override_id": None}
    return {
        "person": found.person,
        "source": found.source,
        "until": found.until.isoformat(),
        "override_id": found.override_id,
    }


def at_param(request: Request) -> datetime:
    text = request.query_params.get("at")
    if not text:
        return datetime.now(UTC)
    try:
        return bounded_time(datetime.fromisoformat(text))  # a naive time comes back as UTC
    except ValueError as exc:
        raise HttpError(422, f"'at' is not an ISO 8601 time between 1970 and 9000: {text[:64]!r}") from exc


class OnCallApi(Door):
    """On call and overrides."""

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/oncall", self.who_is_on_call, methods=["GET"]),
            Route("/api/v1/oncall/{team}", self.team_on_call, methods=["GET"]),
            Route("/api/v1/oncall/{team}/overrides", self.add_override, methods=["POST"]),
            Route("/api/v1/oncall/{team}/overrides/{override_id}", self.remove_override, methods=["DELETE"]),
        ]

    async def who_is_on_call(self, request: Request) -> Response:
        try:
            self.edge.api_client(request)
            at = at_param(request)
            teams = await self.edge.current_teams()
            overrides = await run_in_threadpool(db.list_overrides, self.deps.engine, since=at)
        except HttpError as exc:
            return self.edge.fail(exc, "api")
        return JSONResponse(
            {
                "at": at.isoformat(),
                "teams": [
                    {"team": name, **on_call_json(on_call(name, teams, overrides, at))} for name in sorted(teams.teams)
                ],
            }
        )

    async def team_on_call(self, request: Request) -> Response:
        team = request.path_params["team"]
        try:
            self.edge.api_client(request)
            at = at_param(request)
            teams = await self.edge.current_teams()
            spec = teams.teams.get(team)
            if spec is None:
                raise HttpError(404, f"no team {team!r} in teams.yaml")
            overrides = await run_in_threadpool(db.list_overrides, self.deps.engine, team=team, since=at)
        except HttpError as exc:
            return self.edge.fail(exc, "api")
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

    async def add_override(self, request: Request) -> Response:
        team = request.path_params["team"]
        now = datetime.now(UTC)
        try:
            client = self.edge.api_client(request, "responder")
            teams = await self.edge.current_teams()
            if team not in teams.teams:
                raise HttpError(404, f"no team {team!r} in teams.yaml")
            payload = parse_json(await read_body(request, self.deps.max_body_bytes))
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
                created_by=self.edge.acting(client, body.created_by),
                reason=body.reason,
                created_at=now,
            )
            await run_in_threadpool(db.add_override, self.deps.engine, override)
        except HttpError as exc:
            return self.edge.fail(exc, "api")
        log.info("oncall_override_added", team=team, person=override.person, override_id=override.override_id)
        return JSONResponse(override.model_dump(mode="json"), status_code=201)

    async def remove_override(self, request: Request) -> Response:
        team, oid = request.path_params["team"], request.path_params["override_id"]
        try:
            client = self.edge.api_client(request, "responder")
            removed = await run_in_threadpool(db.delete_override, self.deps.engine, team, oid)
            if removed is None:
                raise HttpError(404, f"no override {oid!r} for team {team!r}")
        except HttpError as exc:
            return self.edge.fail(exc, "api")
        log.info("oncall_override_removed", team=team, override_id=oid, by=client.name)
        return JSONResponse(removed.model_dump(mode="json"))
