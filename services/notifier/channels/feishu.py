"""Feishu / Lark custom bot (自定义机器人): an interactive card posted to the bot's webhook.

The webhook URL (``.../open-apis/bot/v2/hook/TOKEN``) is a secret. With "签名校验" the bot also has a signing
secret: the JSON body carries ``timestamp`` (seconds, as a string, within an hour of Feishu's clock) and
``sign`` = base64 of HMAC-SHA256 with key = ``"{timestamp}\\n{secret}"`` over an EMPTY message — key and
message the other way round from DingTalk.

The card: a header with the subject (red for escalations and breaches, orange for warnings, blue otherwise),
the text as ``lark_md``, and one button per action (the first "primary"). A custom bot can mention people only
by open_id or user_id, which we do not know: the person is named in the text instead.

Feishu answers ``{"code": 0, "msg": "success"}`` (older answers carry ``StatusCode``). 11232 (frequency limited)
and HTTP 429/5xx are retryable; 19021 (bad signature or timestamp), 19022 (IP not allowed), 19024 (keyword
missing), 19001/19002 (bad parameters or token), 9499 (bad request) are not. The body must stay within 20 KB.
Limit: 100 a minute and 5 a second per bot; RateLimit(3, 2) (a bucket of 3 refilled at 1.5 a second) keeps
both: at most 4.5 in any second and 93 in any minute.

    channels:
      - {type: feishu, name: ops-lark, url_env: OPS_LARK_URL, secret_env: OPS_LARK_SECRET}
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, Literal

import orjson

from services.notifier.channels.base import (
    ChannelKind,
    DeliveryError,
    Message,
    RateLimit,
    SignedChannelConfig,
    UrlChannel,
    VendorCodes,
    post,
)
from services.notifier.channels.base import (
    answer_error as vendor_answer_error,
)
from services.notifier.channels.sizing import fit_text

MAX_BODY_BYTES = 20_000
"""Feishu documents 20 KB for the body; 20000 keeps a margin whether a KB is 1000 or 1024 bytes."""
LIMIT = RateLimit(3, 2)
TEMPLATES = {"escalation": "red", "breach": "red", "warning": "orange"}

RETRYABLE = {11232: "frequency limited"}
KNOWN = {
    19021: "signature or timestamp check failed",
    19022: "IP not allowed",
    19024: "keyword not found",
    19001: "invalid parameter or token",
    19002: "invalid parameters",
    9499: "bad request",
}


class FeishuConfig(SignedChannelConfig):
    """``secret``: the bot's "签名校验" secret (optional)."""

    type: Literal["feishu"] = "feishu"


def sign(secret: str, timestamp_s: int) -> str:
    """base64 HMAC-SHA256 with key = "{timestamp}\\n{secret}" over an empty message."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def card(message: Message, text: str) -> dict[str, Any]:
    """The interactive card for ``message`` with ``text`` (its text, possibly cut) as the card's lark_md."""
    content = text if message.mention is None else f"{text}\n**For:** {message.mention.name}"
    elements: list[dict[str, Any]] = [{"tag": "div", "text": {"tag": "lark_md", "content": content}}]
    if message.actions:
        buttons = [
            {
                "tag": "button",
                "text": {"tag": "plain_text", "content": a.label},
                "type": "primary" if i == 0 else "default",
                "url": a.url,
            }
            for i, a in enumerate(message.actions)
        ]
        elements.append({"tag": "action", "actions": buttons})
    return {
        "header": {
            "title": {"tag": "plain_text", "content": message.subject},
            "template": TEMPLATES.get(message.kind, "blue"),
        },
        "elements": elements,
    }


def payload(message: Message, text: str, secret: str | None, timestamp_s: int) -> dict[str, Any]:
    signed = {"timestamp": str(timestamp_s), "sign": sign(secret, timestamp_s)} if secret is not None else {}
    return {**signed, "msg_type": "interactive", "card": card(message, text)}


def render(message: Message, secret: str | None, timestamp_s: int) -> bytes:
    """The JSON body within MAX_BODY_BYTES (the text cut with the marker when it would not fit)."""
    text = fit_text(message.text, MAX_BODY_BYTES, lambda t: len(orjson.dumps(payload(message, t, secret, timestamp_s))))
    return orjson.dumps(payload(message, text, secret, timestamp_s))


CODES = VendorCodes("feishu", ("code", "StatusCode"), RETRYABLE, KNOWN)


def answer_error(name: str, status: int, body: bytes, retry_after: str | None = None) -> DeliveryError | None:
    """What Feishu's answer means: None for success, else the error (never quoting the answer's text)."""
    return vendor_answer_error(CODES, name, status, body, retry_after)


class FeishuChannel(UrlChannel):
    kind = "feishu"

    async def send(self, message: Message, target: str) -> None:
        url, secret = self._entry(target)
        body = render(message, secret, int(self._clock()))
        response = await post(self._http, self.kind, target, url, body)
        after = response.headers.get("retry-after") or response.headers.get("x-ogw-ratelimit-reset")
        error = answer_error(target, response.status_code, response.content, after)
        if error is not None:
            raise error


build = FeishuChannel


KIND = ChannelKind(
    kind="feishu",
    config=FeishuConfig,
    build=build,
    limit=LIMIT,
    max_bytes=MAX_BODY_BYTES,
    summary="Feishu/Lark custom bot: an interactive card to the webhook URL (a secret), optionally signed (签名校验)",
)
