"""``GET /api/v1/status`` (admin): what this intake takes in and how it stands, as Alertmanager's
``/api/v2/status`` shows its configuration, without any secret: the integrations (format, whether signed, rate
limit, heartbeat, severity words), the API clients (role, whom they may act for), the feedback forms and the mail
addresses, the broker's readiness and the database schema's revision. Built from an allowlist of fields: a new
secret field in the config never reaches this answer by accident."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.intake.config import IntakeConfig
from services.intake.edge import HttpError, IntakeDeps
from services.intake.limits import RateLimitConfig
from services.intake.shell import Door
from shared.store import schema


def _seconds(value: timedelta) -> float:
    return value.total_seconds()


def _limit(limit: RateLimitConfig | None) -> dict[str, Any] | None:
    if limit is None:
        return None
    return {"requests": limit.requests, "per_s": _seconds(limit.per), "burst": limit.burst or limit.requests}


def config_summary(config: IntakeConfig) -> dict[str, Any]:
    """The configuration as people need to see it: names, formats, roles, limits; never a token, a hash of one, a
    signing key or the variable that holds it."""
    integrations = [
        {
            "name": i.name,
            "format": i.format,
            "signed": i.signing_key() is not None,
            "rate_limit": _limit(i.rate_limit),
            "heartbeat": (
                {
                    "name": i.heartbeat_name(),
                    "every_s": _seconds(i.heartbeat.every),
                    "grace_s": _seconds(i.heartbeat.grace or i.heartbeat.every),
                }
                if i.heartbeat is not None
                else None
            ),
            "severities": {word: severity.value for word, severity in sorted(i.severities.items())},
        }
        for i in config.integrations
    ]
    clients = [{"name": c.name, "role": c.role, "acts_for": list(c.acts_for)} for c in config.api_clients]
    forms = [{"project": f.name, "customer": f.customer, "rate_limit": _limit(f.rate_limit)} for f in config.forms]
    mail = (
        {"addresses": list(config.mail.addresses), "project": config.mail.project, "customer": config.mail.customer}
        if config.mail is not None
        else None
    )
    return {"integrations": integrations, "api_clients": clients, "forms": forms, "mail": mail}


class StatusApi(Door):
    def routes(self) -> list[Route]:
        return [Route("/api/v1/status", self.status, methods=["GET"])]

    async def status(self, request: Request) -> Response:
        try:
            self.edge.api_client(request, "admin")
        except HttpError as exc:
            return self.edge.fail(exc, "api")
        ready = await self.deps.publisher.check()
        try:
            revision: str | None = await run_in_threadpool(_revision, self.deps)
        except SQLAlchemyError:
            revision = "unavailable"  # the database is down: the rest still answers
        return JSONResponse(
            {
                "kafka": "ready" if ready else "unavailable",
                "schema_revision": revision,
                "schema_newest": schema.head(),
                "config": config_summary(self.deps.config),
            }
        )


def _revision(deps: IntakeDeps) -> str | None:
    with deps.engine.connect() as conn:
        return schema.current(conn)
