"""ticketloop's own signed webhook, received as a receiver should: ``POST /hooks/<name>``.

It checks ``X-Ticketloop-Signature: v1=`` + hex HMAC-SHA256(secret, "{X-Ticketloop-Timestamp}.{body}") with its
own code, and a timestamp within five minutes; a wrong or stale signature is 401, an unknown hook 404. A body
with a ``notification_id`` must carry the same id in ``Idempotency-Key`` (else 400).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import orjson

from deploy.local.vendors.base import Answer, Limit, ReceivedChat, Request, is_number

MAX_SKEW_S = 300


def signature_problem(secret: str, timestamp: str, body: bytes, signature: str, now: float) -> str | None:
    """None when the signature is valid, else why not."""
    if not is_number(timestamp):
        return "missing or malformed timestamp"
    if abs(now - int(timestamp)) > MAX_SKEW_S:
        return "timestamp outside the 5 minute window"
    expected = "v1=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return "signature mismatch"
    return None


def json_object(request: Request) -> dict[str, Any] | Answer:
    """The body as ticketloop's webhook sends it (a JSON object, its ``actions`` a list of objects, its
    ``notification_id`` the Idempotency-Key), or the 400 that says what is wrong."""
    try:
        body: Any = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        return Answer(400, b"body is not JSON", "text/plain")
    if not isinstance(body, dict):
        return Answer(400, b"body is not a JSON object", "text/plain")
    if "notification_id" in body and request.headers.get("idempotency-key") != str(body["notification_id"]):
        return Answer(400, b"Idempotency-Key is not the body's notification_id", "text/plain")
    actions = body.get("actions") or []
    if not isinstance(actions, list) or not all(isinstance(a, dict) for a in actions):
        return Answer(400, b"actions must be a list of objects (label, url)", "text/plain")
    return body


class TicketloopWebhookVendor:
    vendor = "webhook"
    prefix = "/hooks"
    limit: Limit | None = None

    def __init__(self, secrets: Mapping[str, str]) -> None:
        """``secrets``: hook name (the path after /hooks/) → its signing secret."""
        self.secrets = dict(secrets)

    def hook_of(self, request: Request) -> str:
        return request.path.removeprefix("/")

    def rejected(self, request: Request, why: str) -> Answer:  # noqa: ARG002
        return Answer(401, why.encode(), "text/plain")

    def over_limit(self, request: Request) -> Answer:  # noqa: ARG002
        return Answer(429, b"too many requests", "text/plain", (("Retry-After", "1"),))

    def handle(self, request: Request, now: float) -> tuple[Answer, ReceivedChat | None]:
        secret = self.secrets.get(self.hook_of(request))
        if secret is None or request.method != "POST":
            return Answer(404, b"unknown hook", "text/plain"), None
        why = signature_problem(
            secret,
            request.headers.get("x-ticketloop-timestamp", ""),
            request.body,
            request.headers.get("x-ticketloop-signature", ""),
            now,
        )
        if why is not None:
            return self.rejected(request, why), None
        body = json_object(request)
        if isinstance(body, Answer):
            return body, None
        actions = tuple((str(a.get("label", "")), str(a.get("url", ""))) for a in body.get("actions") or [])
        seen = ReceivedChat(
            self.vendor,
            self.hook_of(request),
            str(body.get("subject", "")),
            str(body.get("text", "")),
            actions,
            body=body,
            at=now,
        )
        return Answer(200, b"ok", "text/plain"), seen
