"""A local Feishu / Lark custom bot endpoint: ``POST /feishu/open-apis/bot/v2/hook/<token>``.

It checks what Feishu checks and answers as Feishu does, HTTP 200 with ``code``/``msg``:
- the token is a configured bot's, else 19001 "param invalid: incoming webhook access token invalid";
- the body within 20 KB and JSON, else 9499 "Bad Request";
- for a bot with a signing secret: ``timestamp`` (seconds) within an hour of now and ``sign`` equal to base64
  HMAC-SHA256 with key = "{timestamp}\\n{secret}" over an empty message, else 19021;
- ``msg_type`` known, else 19002; an interactive card's shape (header title, div/lark_md, action buttons with
  text and url), else 9499;
- 5 a second (here) and 100 a minute (the sink's Limit) per bot, else 11232 "frequency limited".
The signature is computed here, independently of the notifier's channel code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

import orjson

from deploy.local.vendors.base import Answer, Limit, ReceivedChat, Request, is_number, one_of
from deploy.local.vendors.chat_markdown import readable

MAX_BODY = 20 * 1024
SKEW_S = 3600
PER_SECOND = 5
HOOK = "/open-apis/bot/v2/hook/"
TYPES = {"text", "post", "image", "share_chat", "interactive"}
AT = re.compile(r"<at (?:id|user_id|open_id|email)=\"?([^\">\s]+)\"?>\s*</at>")


def code(value: int, message: str) -> Answer:
    return Answer(200, orjson.dumps({"code": value, "data": {}, "msg": message}))


SUCCESS = Answer(
    200, orjson.dumps({"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"})
)
BAD_REQUEST = code(9499, "Bad Request")


def expected_sign(secret: str, timestamp: str) -> str:
    mac = hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


def body_refusal(raw: bytes, secret: str | None, now: float) -> Answer | None:
    """Feishu's answer to a body it refuses: too big or not JSON, a bad signature, an unknown msg_type, a card
    that does not render."""
    body = orjson.loads(raw) if len(raw) <= MAX_BODY and _is_json(raw) else None
    if not isinstance(body, dict):
        return BAD_REQUEST
    if secret is not None and not signed(body, secret, now):
        return code(19021, "sign match fail or timestamp is not within one hour from current time")
    if not one_of(body.get("msg_type"), TYPES):
        return code(19002, "params error, msg_type need")
    if body["msg_type"] == "interactive" and not card_is_valid(body.get("card")):
        return BAD_REQUEST
    return None


def _is_json(raw: bytes) -> bool:
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return True


def signed(body: dict[str, Any], secret: str, now: float) -> bool:
    """``timestamp`` within an hour of ``now`` and ``sign`` right."""
    timestamp, sign = str(body.get("timestamp", "")), body.get("sign")
    if not is_number(timestamp) or abs(now - int(timestamp)) > SKEW_S or not isinstance(sign, str):
        return False
    return hmac.compare_digest(sign.encode(), expected_sign(secret, timestamp).encode())


def card_is_valid(card: object) -> bool:
    """The shape the card must have to render: a plain_text title if a header is given, elements that are
    divs with plain_text/lark_md text, or action rows of buttons with a plain_text label and a url."""
    if not isinstance(card, dict) or not isinstance(card.get("elements"), list):
        return False
    header = card.get("header")
    if header is not None:
        title = header.get("title") if isinstance(header, dict) else None
        if not (isinstance(title, dict) and title.get("tag") == "plain_text" and isinstance(title.get("content"), str)):
            return False
    return all(_element_is_valid(e) for e in card["elements"])


def _element_is_valid(element: object) -> bool:
    if not isinstance(element, dict):
        return False
    if element.get("tag") == "div":
        text = element.get("text")
        return isinstance(text, dict) and text.get("tag") in ("plain_text", "lark_md") and "content" in text
    if element.get("tag") == "action":
        actions = element.get("actions")
        return isinstance(actions, list) and all(_button_is_valid(b) for b in actions)
    return element.get("tag") in ("hr", "markdown", "note", "img")


def _button_is_valid(button: object) -> bool:
    if not isinstance(button, dict) or button.get("tag") != "button":
        return False
    text = button.get("text")
    return (
        isinstance(text, dict)
        and text.get("tag") in ("plain_text", "lark_md")
        and isinstance(button.get("url", ""), str)
        and button.get("type", "default") in ("default", "primary", "danger")
    )


class FeishuVendor:
    """Bots by hook token, each with its signing secret or None."""

    vendor = "feishu"
    prefix = "/feishu"
    limit: Limit | None = Limit(100, 60)

    def __init__(self, bots: Mapping[str, str | None]) -> None:
        self.bots = dict(bots)
        self._recent: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hook_of(self, request: Request) -> str:
        return request.path.removeprefix(HOOK)

    def rejected(self, request: Request, why: str) -> Answer:  # noqa: ARG002
        return code(9499, why)

    def over_limit(self, request: Request) -> Answer:  # noqa: ARG002
        return code(11232, "frequency limited")

    def refusal(self, request: Request, now: float) -> Answer | None:
        if not request.path.startswith(HOOK) or request.method != "POST":
            return Answer(404, b"404 page not found", "text/plain")
        token = self.hook_of(request)
        if token not in self.bots:
            return code(19001, "param invalid: incoming webhook access token invalid")
        return body_refusal(request.body, self.bots[token], now) or self.per_second(token, now)

    def per_second(self, token: str, now: float) -> Answer | None:
        """Feishu's 5-a-second limit (the sink counts the 100-a-minute one)."""
        with self._lock:
            recent = self._recent.setdefault(token, deque())
            while recent and recent[0] <= now - 1.0:
                recent.popleft()
            if len(recent) >= PER_SECOND:
                return self.over_limit(Request("POST", "", {}, {}, b""))
            recent.append(now)
        return None

    def handle(self, request: Request, now: float) -> tuple[Answer, ReceivedChat | None]:
        refusal = self.refusal(request, now)
        if refusal is not None:
            return refusal, None
        return SUCCESS, received(self.hook_of(request), orjson.loads(request.body), now)


def received(token: str, body: dict[str, Any], now: float) -> ReceivedChat:
    """What the group sees of a card (title, texts, buttons, ``<at>`` mentions) or of a text message."""
    if body["msg_type"] != "interactive":
        content = body.get("content")
        text = str(content.get("text", "")) if isinstance(content, dict) else ""
        return ReceivedChat("feishu", token, text.split("\n", 1)[0], text, (), tuple(AT.findall(text)), body, now)
    card = body["card"]
    header = card.get("header") or {}
    title = str(header.get("title", {}).get("content", ""))
    texts: list[str] = []
    actions: list[tuple[str, str]] = []
    for element in card["elements"]:
        if element.get("tag") == "div":
            texts.append(str(element["text"]["content"]))
        elif element.get("tag") == "action":
            actions += [(str(b["text"].get("content", "")), str(b.get("url", ""))) for b in element["actions"]]
    raw = "\n".join(texts)
    return ReceivedChat("feishu", token, title, readable(raw), tuple(actions), tuple(AT.findall(raw)), body, now)
