"""WeCom (企业微信) group robot (群机器人): markdown, or text when someone is to be mentioned by mobile.

The robot's URL (``.../cgi-bin/webhook/send?key=KEY``) is the only secret: WeCom robots have no signing.

Mentions: WeCom's markdown can mention only by userid (``<@userid>``); ``mentioned_mobile_list`` works on
``msgtype: text`` only. So a message whose mention has a mobile is sent as ONE text message (content at most
2048 bytes: the subject, the text, each action as "Label: URL" — WeCom shows the URL as a link) with
``mentioned_mobile_list``, so the person is notified; every other message is markdown (content at most 4096
bytes) with the actions as markdown links and the person, if any, named in the text. One request per message,
so a retry never repeats half of a pair.

WeCom answers HTTP 200 with ``errcode``: 0 is success, 45009 (over the limit of about 20 messages a minute) and
-1 (busy) are retryable, other codes (93000 invalid webhook URL/key, 40008 bad msgtype, 40058 bad parameter or
content too long, 44004 empty content) are not.

    channels:
      - {type: wecom, name: ops-wecom, url_env: OPS_WECOM_URL}
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from services.notifier.channels.base import (
    ChannelKind,
    DeliveryError,
    Message,
    RateLimit,
    UrlChannel,
    UrlChannelConfig,
    VendorCodes,
    post,
)
from services.notifier.channels.base import (
    answer_error as vendor_answer_error,
)
from services.notifier.channels.sizing import fit_text

MARKDOWN_MAX_BYTES = 4096
TEXT_MAX_BYTES = 2048
LIMIT = RateLimit(20, 60)
FREQ_WAIT_S = 60.0
"""WeCom counts per minute: after 45009 the next minute may take it."""

RETRYABLE = {45009: "over the frequency limit", -1: "system busy"}
KNOWN = {
    93000: "invalid webhook URL or key",
    40008: "invalid msgtype",
    40058: "invalid parameter or content too long",
    44004: "empty content",
}


class WeComConfig(UrlChannelConfig):
    type: Literal["wecom"] = "wecom"


def markdown_content(message: Message, text: str) -> str:
    """Markdown: bold subject, the text, the actions as links, the person named."""
    parts = [f"**{message.subject}**", text]
    if message.mention is not None:
        parts.append(f"For: {message.mention.name}")
    if message.actions:
        parts.append("  ".join(f"[{a.label}]({a.url})" for a in message.actions))
    return "\n".join(parts)


def text_content(message: Message, text: str) -> str:
    """Plain text: subject, the text, one "Label: URL" line per action."""
    lines = [message.subject, "", text]
    if message.actions:
        lines += ["", *(f"{a.label}: {a.url}" for a in message.actions)]
    return "\n".join(lines)


def payload(message: Message) -> dict[str, Any]:
    """The body: text with ``mentioned_mobile_list`` when the mention has a mobile, else markdown; the
    message's text cut so the content stays within WeCom's byte limit for that msgtype."""
    mobile = message.mention.mobile if message.mention is not None else None
    if mobile is not None:
        text = fit_text(message.text, TEXT_MAX_BYTES, lambda t: len(text_content(message, t).encode()))
        return {
            "msgtype": "text",
            "text": {"content": text_content(message, text), "mentioned_mobile_list": [mobile]},
        }
    text = fit_text(message.text, MARKDOWN_MAX_BYTES, lambda t: len(markdown_content(message, t).encode()))
    return {"msgtype": "markdown", "markdown": {"content": markdown_content(message, text)}}


def render(message: Message) -> bytes:
    return orjson.dumps(payload(message))


CODES = VendorCodes("wecom", ("errcode",), RETRYABLE, KNOWN, {45009: FREQ_WAIT_S})


def answer_error(name: str, status: int, body: bytes, retry_after: str | None = None) -> DeliveryError | None:
    """What WeCom's answer means: None for success, else the error (never quoting the answer's text)."""
    return vendor_answer_error(CODES, name, status, body, retry_after)


class WeComChannel(UrlChannel):
    kind = "wecom"

    async def send(self, message: Message, target: str) -> None:
        url, _ = self._entry(target)
        response = await post(self._http, self.kind, target, url, render(message))
        error = answer_error(target, response.status_code, response.content, response.headers.get("retry-after"))
        if error is not None:
            raise error


build = WeComChannel


KIND = ChannelKind(
    kind="wecom",
    config=WeComConfig,
    build=build,
    limit=LIMIT,
    max_bytes=MARKDOWN_MAX_BYTES,
    summary="WeCom group robot: markdown, or text with mentioned_mobile_list, to the webhook URL (its key: the secret)",
)
