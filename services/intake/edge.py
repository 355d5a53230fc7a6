"""What every HTTP handler of intake shares: the error answer, the dependencies, the body read within its limit,
JSON parsing, bearer tokens, ISO times, and the ticket verbs of the REST API (api.py, actions.py, deliveries.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import orjson
import structlog
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy import Engine
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.intake.config import IntakeConfig
from services.intake.limits import SharedArrivals, retry_after
from services.intake.publisher import Publisher
from services.router.projects import ProjectsConfig
from shared.events import Action, BoundedTime
from shared.infra.actionlinks import LinkKeys
from shared.infra.config import ConfigWatcher
from shared.infra.digits import is_digits
from shared.infra.logging import get_logger, new_trace_id
from shared.rules.oncall import TeamsConfig
from shared.store import db
from shared.streaming.topics import Topics

log = get_logger(__name__)


class HttpError(Exception):
    def __init__(
        self,
        status: int,
        error: str,
        problems: list[dict[str, str]] | None = None,
        *,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(error)
        self.status, self.error, self.problems = status, error, problems or []
        self.retry_after_s = retry_after_s

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": self.error}
        if self.problems:
            body["problems"] = self.problems
        if self.status >= 500:  # the id its log line is under (RequestIds bound it), as an unhandled 500's answer has
            rid = structlog.contextvars.get_contextvars().get("request_id")
            if rid is not None:
                body["request_id"] = rid
        headers = {"Retry-After": "5"} if self.status == 503 else None
        if self.retry_after_s is not None:
            headers = {"Retry-After": retry_after(self.retry_after_s)}
        if self.status == 401:
            headers = {"WWW-Authenticate": 'Bearer realm="ticketloop"'}
        return JSONResponse(body, status_code=self.status, headers=headers)


class CommandBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor: str | None = Field(default=None, min_length=1, max_length=256)
    reason: str = Field(default="", max_length=4000)
    team: str | None = None
    person: str | None = None
    priority: str | None = None
    until: BoundedTime | None = None


# URL verb -> action: POST /api/v1/tickets/{id}/{verb}
VERBS: dict[str, Action] = {
    "ack": Action.acknowledge,
    "unack": Action.unacknowledge,
    "resolve": Action.resolve,
    "close": Action.close,
    "reopen": Action.reopen,
    "reassign": Action.reassign,
    "comment": Action.comment,
    "snooze": Action.snooze,
    "priority": Action.set_priority,
    "wait": Action.wait_on_customer,
    "customer-replied": Action.customer_replied,
}


@dataclass
class IntakeDeps:
    config: IntakeConfig
    publisher: Publisher
    engine: Engine
    topics: Topics
    registry: CollectorRegistry
    max_body_bytes: int = 1_048_576
    teams: ConfigWatcher[TeamsConfig] | None = None
    """teams.yaml, for the on-call endpoints (re-read when it changes)."""
    projects: ConfigWatcher[ProjectsConfig] | None = None
    """projects.yaml, for the projects' satisfaction goals (re-read when it changes)."""
    link_keys: LinkKeys | None = None
    """one-click action links (services/intake/actions.py); None: /act/... answers 404"""
    slack_signing_secret: SecretStr | None = None
    """Slack's interactive callback; None: it answers 404"""
    http: httpx.AsyncClient | None = None
    """for redrawing Slack messages through their response_url"""
    shared_arrivals: SharedArrivals | None = None
    """the rate limits' arrival times shared with the other intake workers (None: this process's own)"""
    scrape: CollectorRegistry | None = None
    """what ``/metrics`` shows (every worker's counts in multiprocess mode; None: ``registry``)"""
    worker: int = 0
    """this process's index among intake's workers (services/intake/workers.py), in ``/healthz``"""

    @property
    def shown(self) -> CollectorRegistry:
        """What ``/metrics`` renders: ``scrape`` when there is one, else ``registry``."""
        return self.scrape if self.scrape is not None else self.registry


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HttpError(401, "missing bearer token (Authorization: Bearer <token>)")
    return token.strip()


def declared_length(value: str | None) -> int | None:
    """A request's declared Content-Length: None when it declares none; a 400 when it is not a number of bytes
    (``is_digits``)."""
    if value is None:
        return None
    if not is_digits(value):
        raise HttpError(400, "Content-Length must be a number of bytes")
    return int(value)


async def read_body(request: Request, limit: int) -> bytes:
    declared = declared_length(request.headers.get("content-length"))
    if declared is not None and declared > limit:
        raise HttpError(413, f"body of {declared} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    if not raw.strip():
        raise HttpError(400, "empty body: expected a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, f"malformed JSON: {exc}") from exc


_PLAIN_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_of(given: str | None) -> str:
    """The caller's X-Request-Id when it is a plain token of at most 128 characters, else a new one."""
    return given if given is not None and _PLAIN_ID.match(given) else new_trace_id()


def trace_id_of(request: Request) -> str:
    """The caller's X-Trace-Id when it is a plain token of at most 128 characters, else a new one: it goes into
    every record the request makes (a 100 kB one, copied into each alert of a batch, was taken before)."""
    return request_id_of(request.headers.get("x-trace-id"))


TOKEN_PATHS = ("/act/", "/survey/", "/solved/")
"""Paths whose last part is a signed link's token: a credential, never logged."""


def loggable_path(path: str) -> str:
    """A request path as it may be logged: a link's token (``/act/<token>``, ``/survey/<token>``) left out."""
    prefix = next((p for p in TOKEN_PATHS if path.startswith(p)), None)
    return f"{prefix}…" if prefix is not None else path[:256]


def client_gone(exc: BaseException) -> bool:
    """The client went away mid-request: its body cut short (``ClientDisconnect``), its connection reset, or the
    answer written after it closed (uvloop's RuntimeError on a closed transport)."""
    if isinstance(exc, ClientDisconnect | ConnectionError):
        return True
    return isinstance(exc, RuntimeError) and "closed=True" in str(exc)


class RequestIds:
    """ASGI middleware (inside Starlette's own error middleware): every answer carries ``X-Request-Id`` (the
    caller's, or a new one); an exception a handler let out is logged once, with its traceback and the id, and
    answered 500 with the id, so the person who got the 500 can name the log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None)
        rid = request_id_of(given)
        structlog.contextvars.bind_contextvars(request_id=rid)  # every log line of this request names it
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if client_gone(exc):  # nobody to answer, and nothing of ours went wrong: no traceback, no 500
                path = loggable_path(scope.get("path", ""))
                log.info("request_abandoned", method=scope.get("method"), path=path, error=type(exc).__name__)
                return
            log.exception(
                "request_failed", method=scope.get("method"), path=loggable_path(scope.get("path", "")), request_id=rid
            )
            if started:  # an answer under way cannot become a 500: the connection is cut
                raise
            answer = {"error": "internal error: the log line names this request id", "request_id": rid}
            await JSONResponse(answer, 500)(scope, receive, send_with_id)


def iso_time(value: datetime | None) -> str | None:
    v = db.as_utc(value)
    return v.isoformat() if v is not None else None
