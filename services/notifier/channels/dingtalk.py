"""DingTalk custom robot (自定义机器人): markdown or actionCard posted to the robot's send URL.

The robot's URL (``.../robot/send?access_token=TOKEN``) is a secret. With the "加签" security setting the robot
also has a signing secret (``SEC...``): each request carries ``timestamp`` (milliseconds, within an hour of
DingTalk's clock) and ``sign`` = url-encoded base64 of HMAC-SHA256 with key = secret over
``"{timestamp}\\n{secret}"``, appended to the URL's query.

What is sent (DingTalk documents ``at`` for text and markdown only, and highlights a mention only when the
"@mobile" is also in the text):
- a mention with a mobile: markdown with the action links as markdown links, "@mobile" at the end, and
  ``at.atMobiles`` — the person is notified, the links stay one tap away;
- else with actions: an actionCard with one button per action;
- else: markdown.

DingTalk answers HTTP 200 even when it refuses: ``errcode`` 0 is success. 130101 (over 20 messages a minute;
the robot is then throttled for 10 minutes) and -1 (busy) are retryable, other codes are not. The whole body
must stay within 20000 bytes (errcode 460101): the text is cut to fit.

    channels:
      - {type: dingtalk, name: ops-ding, url_env: OPS_DING_URL, secret_env: OPS_DING_SECRET}
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, Literal
from urllib.parse import quote

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
"""The request body limit (errcode 460101 "message too long, exceed 20000 bytes")."""
LIMIT = RateLimit(20, 60)
THROTTLE_S = 600.0
"""After 20 messages in a minute DingTalk throttles the robot for 10 minutes (errcode 130101)."""

RETRYABLE = {130101: "sending too fast (over 20 a minute)", -1: "system busy"}
KNOWN = {
    310000: "security check failed (signature, timestamp, keyword or IP)",
    300001: "token does not exist",
    300005: "token does not exist",
    400102: "robot is disabled",
    40035: "body is not JSON",
    400402: "a required parameter is missing",
    400403: "a required parameter is missing",
    460101: "message too long",
}


class DingTalkConfig(SignedChannelConfig):
    """``secret``: the robot's "加签" secret (optional: robots secured by keyword or IP have none)."""

    type: Literal["dingtalk"] = "dingtalk"


def sign(secret: str, timestamp_ms: int) -> str:
    """The url-encoded ``sign`` query value: base64 HMAC-SHA256, key = secret, over "{timestamp}\\n{secret}"."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return quote(base64.b64encode(digest).decode(), safe="")


def signed_url(url: str, secret: str | None, timestamp_ms: int) -> str:
    """The robot URL with ``&timestamp=..&sign=..`` appended when the robot has a secret."""
    if secret is None:
        return url
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}timestamp={timestamp_ms}&sign={sign(secret, timestamp_ms)}"


def _markdown_lines(text: str) -> str:
    """Plain text lines as markdown lines (a hard break at each line end)."""
    return "  \n".join(text.splitlines())


def payload(message: Message, text: str) -> dict[str, Any]:
    """The body for ``message`` with ``text`` (the message's text, possibly cut) as its markdown text."""
    mention = message.mention
    mobile = mention.mobile if mention is not None else None
    head = f"#### {message.subject}\n\n"
    body = _markdown_lines(text)
    if mention is not None and mobile is None:
        body += f"  \nFor: {mention.name}"
    if mobile is not None:
        links = " | ".join(f"[{a.label}]({a.url})" for a in message.actions)
        tail = (f"\n\n{links}" if links else "") + f"\n\n@{mobile}"
        return {
            "msgtype": "markdown",
            "markdown": {"title": message.subject, "text": head + body + tail},
            "at": {"atMobiles": [mobile], "isAtAll": False},
        }
    if message.actions:
        return {
            "msgtype": "actionCard",
            "actionCard": {
                "title": message.subject,
                "text": head + body,
                "btnOrientation": "0",
                "btns": [{"title": a.label, "actionURL": a.url} for a in message.actions],
            },
        }
    return {"msgtype": "markdown", "markdown": {"title": message.subject, "text": head + body}}


def render(message: Message) -> bytes:
    """The JSON body within MAX_BODY_BYTES (the text cut with the marker when it would not fit)."""
    text = fit_text(message.text, MAX_BODY_BYTES, lambda t: len(orjson.dumps(payload(message, t))))
    return orjson.dumps(payload(message, text))


CODES = VendorCodes("dingtalk", ("errcode",), RETRYABLE, KNOWN, {130101: THROTTLE_S})


def answer_error(name: str, status: int, body: bytes, retry_after: str | None = None) -> DeliveryError | None:
    """What Dingtalk's answer means: None for success, else the error (never quoting the answer's text)."""
    return vendor_answer_error(CODES, name, status, body, retry_after)


class DingTalkChannel(UrlChannel):
    kind = "dingtalk"

    async def send(self, message: Message, target: str) -> None:
        url, secret = self._entry(target)
        timestamp_ms = int(self._clock() * 1000)
        signed = signed_url(url, secret, timestamp_ms)
        response = await post(self._http, self.kind, target, signed, render(message))
        error = answer_error(target, response.status_code, response.content, response.headers.get("retry-after"))
        if error is not None:
            raise error


build = DingTalkChannel


KIND = ChannelKind(
    kind="dingtalk",
    config=DingTalkConfig,
    build=build,
    limit=LIMIT,
    max_bytes=MAX_BODY_BYTES,
    summary="DingTalk custom robot: markdown/actionCard to the robot URL (a secret), optionally signed (加签)",
)
