"""A local DingTalk custom robot (自定义机器人) endpoint: ``POST /dingtalk/robot/send?access_token=..``.

It checks what DingTalk checks and answers as DingTalk does, HTTP 200 with ``errcode``/``errmsg``:
- the access_token is a configured robot's, else 300001 "token is not exist";
- for a robot with a "加签" secret: ``timestamp`` (ms) within an hour of now and ``sign`` equal to base64
  HMAC-SHA256 (key = secret, message = "{timestamp}\\n{secret}"), after the query's url-decoding, else 310000;
- the body within 20000 bytes, else 460101; JSON, else 40035; a known msgtype with its required fields, else
  400105 / 400402 / 400403;
- over 20 messages a minute per robot: 130101 (the sink's Limit).
The signature is computed here, independently of the notifier's channel code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import orjson

from deploy.local.vendors.base import Answer, Limit, ReceivedChat, Request, is_number, one_of
from deploy.local.vendors.chat_markdown import links, readable

MAX_BODY = 20_000
SKEW_MS = 3_600_000
DOC = "more: [https://open.dingtalk.com/document/robots/custom-robot-access]"
REQUIRED = {
    "text": ("text", ("content",)),
    "markdown": ("markdown", ("title", "text")),
    "link": ("link", ("title", "text", "messageUrl")),
    "actionCard": ("actionCard", ("title", "text")),
    "feedCard": ("feedCard", ("links",)),
}


def errcode(code: int, message: str) -> Answer:
    return Answer(200, orjson.dumps({"errcode": code, "errmsg": message}))


def expected_sign(secret: str, timestamp: str) -> str:
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


def missing(field: str, parent: str) -> Answer:
    code = 400402 if field == "title" else 400403
    return errcode(code, f"错误描述:参数 {parent} --》 {field} 缺失，或者参数格式不正确; 解决方案:请填充上对应参数")


class DingTalkVendor:
    """Robots by access_token, each with its "加签" secret or None (a robot secured by keyword or IP)."""

    vendor = "dingtalk"
    prefix = "/dingtalk"
    limit: Limit | None = Limit(20, 60)

    def __init__(self, robots: Mapping[str, str | None]) -> None:
        self.robots = dict(robots)

    def hook_of(self, request: Request) -> str:
        return request.query.get("access_token", "")

    def rejected(self, request: Request, why: str) -> Answer:  # noqa: ARG002
        return errcode(310000, why)

    def over_limit(self, request: Request) -> Answer:  # noqa: ARG002
        return errcode(130101, "send too fast, exceed 20 times per minute")

    def check_route(self, request: Request, now: float) -> Answer | None:  # noqa: ARG002
        if request.path != "/robot/send" or request.method != "POST":
            return Answer(404, b'{"errcode":404,"errmsg":"not found"}')
        if self.hook_of(request) not in self.robots:
            return errcode(300001, "token is not exist")
        return None

    def check_sign(self, request: Request, now: float) -> Answer | None:
        secret = self.robots[self.hook_of(request)]
        if secret is None:
            return None
        timestamp, sign = request.query.get("timestamp", ""), request.query.get("sign", "")
        if not is_number(timestamp) or abs(now * 1000 - int(timestamp)) > SKEW_MS:
            return errcode(310000, f"invalid timestamp, {DOC}")
        if not hmac.compare_digest(sign.encode(), expected_sign(secret, timestamp).encode()):
            return errcode(310000, f"sign not match, {DOC}")
        return None

    def check_body(self, request: Request, now: float) -> Answer | None:  # noqa: ARG002
        if len(request.body) > MAX_BODY:
            return errcode(460101, f"message too long, exceed {MAX_BODY} bytes")
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return errcode(40035, "缺少参数 json")
        if not isinstance(body, dict) or not one_of(body.get("msgtype"), REQUIRED):
            return errcode(400105, "不支持的消息类型")
        return check_fields(body)

    def handle(self, request: Request, now: float) -> tuple[Answer, ReceivedChat | None]:
        for check in (self.check_route, self.check_sign, self.check_body):
            refusal = check(request, now)
            if refusal is not None:
                return refusal, None
        return errcode(0, "ok"), received(self.hook_of(request), orjson.loads(request.body), now)


def check_fields(body: dict[str, Any]) -> Answer | None:
    parent, fields = REQUIRED[body["msgtype"]]
    part = body.get(parent)
    if not isinstance(part, dict):
        return missing(fields[0], parent)
    for name in fields:
        if not part.get(name):
            return missing(name, parent)
    if parent == "actionCard" and not (part.get("singleTitle") and part.get("singleURL")):
        btns = part.get("btns")
        if not isinstance(btns, list) or not btns:
            return missing("btns", parent)
        if not all(isinstance(b, dict) and b.get("title") and b.get("actionURL") for b in btns):
            return missing("btns", parent)
    return None


def received(token: str, body: dict[str, Any], now: float) -> ReceivedChat:
    """What the group sees: the title, the text, buttons and links, and who is @-mentioned (a mobile in
    ``at.atMobiles`` that also appears as "@mobile" in a text or markdown message)."""
    kind = body["msgtype"]
    part = body[kind]
    raw = str(part.get("content") or part.get("text") or "")
    title = str(part.get("title") or raw.split("\n", 1)[0])
    actions = links(raw) if kind != "text" else []
    if kind == "actionCard":
        if part.get("singleTitle"):
            actions.append((str(part["singleTitle"]), str(part["singleURL"])))
        actions += [(str(b["title"]), str(b["actionURL"])) for b in part.get("btns") or []]
    mentions: tuple[str, ...] = ()
    at = body.get("at")
    if kind in ("text", "markdown") and isinstance(at, dict):
        mentions = tuple(str(m) for m in at.get("atMobiles") or [] if f"@{m}" in raw)
    text = raw if kind == "text" else readable(raw)
    return ReceivedChat("dingtalk", token, title, text, tuple(actions), mentions, body, now)
