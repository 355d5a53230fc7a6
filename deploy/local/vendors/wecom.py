"""A local WeCom (企业微信) group robot endpoint: ``POST /wecom/cgi-bin/webhook/send?key=KEY``.

It checks what WeCom checks and answers as WeCom does, HTTP 200 with ``errcode``/``errmsg``:
- the key is a configured robot's, else 93000 "invalid webhook url";
- JSON with a known msgtype, else 40058 / 40008; text.content at most 2048 bytes and markdown.content at most
  4096 bytes (UTF-8), else 40058 "... exceed max length ..."; empty content: 44004;
- over 20 messages a minute per robot: 45009 "api freq out of limit" (the sink's Limit).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson

from deploy.local.vendors.base import Answer, Limit, ReceivedChat, Request, one_of
from deploy.local.vendors.chat_markdown import labelled_urls, links, readable

MAX_CONTENT = {"text": 2048, "markdown": 4096}
KNOWN_TYPES = {"text", "markdown", "image", "news", "file", "voice", "template_card", "markdown_v2"}
USERID = re.compile(r"<@([^>]+)>")


def errcode(code: int, message: str) -> Answer:
    more = (
        ""
        if code == 0
        else f", hint: [local], from ip: 127.0.0.1, more info at https://open.work.weixin.qq.com/devtool/query?e={code}"
    )
    return Answer(200, orjson.dumps({"errcode": code, "errmsg": message + more}))


class WeComVendor:
    """Robots by key."""

    vendor = "wecom"
    prefix = "/wecom"
    limit: Limit | None = Limit(20, 60)

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = set(keys)

    def hook_of(self, request: Request) -> str:
        return request.query.get("key", "")

    def rejected(self, request: Request, why: str) -> Answer:  # noqa: ARG002
        return errcode(40058, why)

    def over_limit(self, request: Request) -> Answer:  # noqa: ARG002
        return errcode(45009, "api freq out of limit")

    def refusal(self, request: Request) -> Answer | None:
        if request.path != "/cgi-bin/webhook/send" or request.method != "POST":
            return Answer(404, b"not found", "text/plain")
        if self.hook_of(request) not in self.keys:
            return errcode(93000, "invalid webhook url")
        return content_refusal(request.body)

    def handle(self, request: Request, now: float) -> tuple[Answer, ReceivedChat | None]:
        refusal = self.refusal(request)
        if refusal is not None:
            return refusal, None
        return errcode(0, "ok"), received(self.hook_of(request), orjson.loads(request.body), now)


def content_refusal(raw: bytes) -> Answer | None:
    """WeCom's answer to a body it refuses: bad JSON, unknown msgtype, empty or too long content."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return errcode(40058, "Warning: wrong json format. invalid Request Parameter")
    if not isinstance(body, dict) or not one_of(body.get("msgtype"), KNOWN_TYPES):
        return errcode(40008, "invalid message type")
    kind = body["msgtype"]
    if kind not in MAX_CONTENT:
        return None
    part = body.get(kind)
    content = part.get("content") if isinstance(part, dict) else None
    if not isinstance(content, str) or not content:
        return errcode(44004, "empty content")
    if len(content.encode()) > MAX_CONTENT[kind]:
        return errcode(40058, f"{kind}.content exceed max length {MAX_CONTENT[kind]}. invalid Request Parameter")
    return None


def received(key: str, body: dict[str, Any], now: float) -> ReceivedChat:
    """What the group sees. Text: the content, its URLs as links (labelled by what precedes them on the line),
    the mobiles in ``mentioned_mobile_list``. Markdown: the rendered text, its links, ``<@userid>`` mentions."""
    kind = body["msgtype"]
    found = body.get(kind)
    part: dict[str, Any] = found if isinstance(found, dict) else {}
    content = str(part.get("content", ""))
    if kind == "text":
        mentions = [str(m) for m in part.get("mentioned_mobile_list") or []]
        mentions += [str(u) for u in part.get("mentioned_list") or []]
        title = content.split("\n", 1)[0]
        return ReceivedChat("wecom", key, title, content, tuple(labelled_urls(content)), tuple(mentions), body, now)
    text = readable(content)
    title = text.split("\n", 1)[0]
    return ReceivedChat("wecom", key, title, text, tuple(links(content)), tuple(USERID.findall(content)), body, now)
