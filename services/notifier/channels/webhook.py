"""A generic outbound webhook, signed so receivers can verify it and reject replays.

Headers: ``X-Ticketloop-Timestamp`` (unix seconds) and ``X-Ticketloop-Signature: v1=<hex>`` where hex is
HMAC-SHA256 with the endpoint's secret over ``"{timestamp}.{body}"``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx
import orjson

from services.notifier.channels.base import DeliveryError, Message

SIGNATURE_HEADER = "X-Ticketloop-Signature"
TIMESTAMP_HEADER = "X-Ticketloop-Timestamp"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def payload(message: Message) -> bytes:
    return orjson.dumps({"kind": message.kind, "subject": message.subject, "text": message.text, **message.data})


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    url: str
    secret: str


class WebhookChannel:
    name = "webhook"

    def __init__(
        self,
        endpoints: Mapping[str, WebhookEndpoint],
        client: httpx.AsyncClient,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._endpoints, self._client, self._clock = endpoints, client, clock

    async def send(self, message: Message, target: str) -> None:
        endpoint = self._endpoints.get(target)
        if endpoint is None:
            raise DeliveryError(f"no webhook endpoint named {target!r}", retryable=False)
        body = payload(message)
        ts = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(endpoint.secret, ts, body),
        }
        try:
            response = await self._client.post(endpoint.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"POST {endpoint.url}: {exc!r}") from exc
        if response.status_code >= 300:
            retryable = response.status_code >= 500 or response.status_code in (408, 429)
            raise DeliveryError(f"POST {endpoint.url}: HTTP {response.status_code}", retryable=retryable)
