"""A generic outbound webhook, signed so receivers can verify it and reject replays.

Headers: ``X-Ticketloop-Timestamp`` (unix seconds) and ``X-Ticketloop-Signature: v1=<hex>`` where hex is
HMAC-SHA256 with the endpoint's secret over ``"{timestamp}.{body}"``. The body is the message as JSON, with
its action links (``actions``: action, label, url) and its ``notification_id``: the same for every attempt of one
notification, so a receiver that keeps the ids it saw can drop a repeat (a webhook lane has up to ``IN_FLIGHT``
requests on their way, and a notifier killed mid-send sends those again). The same id is in the
``Idempotency-Key`` header, for a receiver (or a proxy before it) that drops repeats without reading the body.

    channels:
      - {type: webhook, name: ops-hook, url: https://hooks.example/ticketloop, secret_env: OPS_HOOK_SECRET}
"""

from __future__ import annotations

import hashlib
import hmac
from typing import ClassVar, Literal

import orjson

from services.notifier.channels.base import (
    NOTIFICATION_ID,
    ChannelKind,
    DeliveryError,
    Message,
    SignedChannelConfig,
    UrlChannel,
    http_error,
    post,
)
from services.notifier.channels.sizing import fit_text

SIGNATURE_HEADER = "X-Ticketloop-Signature"
TIMESTAMP_HEADER = "X-Ticketloop-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_BYTES = 1_000_000
IN_FLIGHT = 4
"""Requests on their way to one webhook at once while its lane is behind (never two of one ticket; keeping up, one
at a time: services/notifier/lanes.py ``CATCH_UP_S``). One at a time, a lane's rate was its round trip's
inverse: about 660 a second per target on this machine in bench/notify_fanout's paced phase, where the notifier
itself had a quarter of a core to spare."""


class WebhookConfig(SignedChannelConfig):
    secret_required: ClassVar[bool] = True
    type: Literal["webhook"] = "webhook"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def headers_for(secret: str, timestamp: int, body: bytes, message: Message) -> dict[str, str]:
    """The request's headers: timestamp and signature, and the notification's id when the message has one."""
    headers = {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}
    notification_id = message.data.get(NOTIFICATION_ID)
    if notification_id:
        headers[IDEMPOTENCY_HEADER] = str(notification_id)
    return headers


def payload(message: Message, max_bytes: int = MAX_BYTES) -> bytes:
    """The message as JSON with its action links; a text that would make the body longer than ``max_bytes`` is
    cut with the marker (a receiver's body limit is never what refuses a notification)."""
    actions = [{"action": a.action, "label": a.label, "url": a.url} for a in message.actions]

    def body(text: str) -> bytes:
        return orjson.dumps(
            {"kind": message.kind, "subject": message.subject, "text": text, **message.data, "actions": actions}
        )

    whole = body(message.text)
    if len(whole) <= max_bytes:
        return whole
    return body(fit_text(message.text, max_bytes, lambda text: len(body(text))))


class WebhookChannel(UrlChannel):
    kind = "webhook"

    async def send(self, message: Message, target: str) -> None:
        url, secret = self._entry(target)
        if secret is None:  # pragma: no cover - the config requires one
            raise DeliveryError(f"webhook {target}: no signing secret", retryable=False)
        body = payload(message)
        headers = headers_for(secret, int(self._clock()), body, message)
        response = await post(self._http, self.kind, target, url, body, headers)
        if response.status_code >= 300:
            raise http_error(self.kind, target, response.status_code, response.headers.get("retry-after"))


build = WebhookChannel


KIND = ChannelKind(
    kind="webhook",
    config=WebhookConfig,
    build=build,
    limit=None,
    in_flight=IN_FLIGHT,
    max_bytes=MAX_BYTES,
    summary="JSON POST signed with X-Ticketloop-Signature (HMAC-SHA256 of '{timestamp}.{body}')",
)
