"""Slack's imitation: incoming webhooks under ``/slack/services/...`` and the Web API under ``/slack/api/...``.

Webhooks: the path is the secret (a set of known paths; others 404 ``no_service``); the body is JSON with
``text`` or ``blocks``; answers 200 ``ok`` as text/plain, or 400 ``invalid_payload`` / ``no_text`` /
``invalid_blocks``, 410 ``channel_is_archived``.
Web API (chat.postMessage, chat.update): ``Authorization: Bearer <bot token>``; answers HTTP 200 with
``{"ok": true, "channel", "ts"}`` or ``{"ok": false, "error"}`` (not_authed, invalid_auth, channel_not_found,
is_archived, no_text, invalid_blocks, message_not_found).
Both check Block Kit's limits; over the rate limit (about one message a second per channel, short bursts
tolerated) they answer 429 with Retry-After.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from deploy.local.vendors.base import Answer, Limit, ReceivedChat, Request, one_of

MAX_BLOCKS = 50
HEADER_MAX = 150
TEXT_OBJECT_MAX = 3000
FIELDS_MAX = 10
FIELD_TEXT_MAX = 2000
CONTEXT_ELEMENTS_MAX = 10
ACTIONS_MAX = 25
BUTTON_TEXT_MAX = 75
BUTTON_URL_MAX = 3000
BUTTON_VALUE_MAX = 2000
ID_MAX = 255
MESSAGE_TEXT_MAX = 40_000
RETRY_AFTER_S = "1"
API_PREFIX = "/api/"


class RefusedError(Exception):
    """Slack's refusal: ``code`` is its error string, ``detail`` says where."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code, self.detail = code, detail


def _blocks_error(where: str, what: str) -> RefusedError:
    return RefusedError("invalid_blocks", f"{where}: {what}")


def _text_of(obj: Any, where: str, max_chars: int, kinds: Iterable[str] = ("plain_text", "mrkdwn")) -> str:
    """The text of a text object, or RefusedError naming what is wrong."""
    if not isinstance(obj, dict) or not one_of(obj.get("type"), set(kinds)):
        raise _blocks_error(where, f"not a text object of type {'/'.join(kinds)}")
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        raise _blocks_error(where, "empty text")
    if len(text) > max_chars:
        raise _blocks_error(where, f"text longer than {max_chars} characters")
    return text


def _elements(block: dict[str, Any], where: str, most: int) -> list[Any]:
    elements = block.get("elements")
    if not isinstance(elements, list) or not 1 <= len(elements) <= most:
        raise _blocks_error(f"{where}.elements", f"1 to {most} required")
    return elements


def _check_button(element: Any, where: str) -> None:
    if not isinstance(element, dict) or element.get("type") != "button":
        raise _blocks_error(where, "only buttons are imitated")
    _text_of(element.get("text"), f"{where}.text", BUTTON_TEXT_MAX, ("plain_text",))
    for name, limit in (("url", BUTTON_URL_MAX), ("value", BUTTON_VALUE_MAX), ("action_id", ID_MAX)):
        value = element.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            raise _blocks_error(f"{where}.{name}", f"longer than {limit} characters")


def _check_header(block: dict[str, Any], where: str) -> None:
    _text_of(block.get("text"), f"{where}.text", HEADER_MAX, ("plain_text",))


def _check_section(block: dict[str, Any], where: str) -> None:
    fields = block.get("fields")
    if block.get("text") is None and not fields:
        raise _blocks_error(where, "a section needs text or fields")
    if block.get("text") is not None:
        _text_of(block.get("text"), f"{where}.text", TEXT_OBJECT_MAX)
    if fields is not None:
        if not isinstance(fields, list) or len(fields) > FIELDS_MAX:
            raise _blocks_error(f"{where}.fields", f"more than {FIELDS_MAX}")
        for i, item in enumerate(fields):
            _text_of(item, f"{where}.fields[{i}]", FIELD_TEXT_MAX)


def _check_context(block: dict[str, Any], where: str) -> None:
    for i, item in enumerate(_elements(block, where, CONTEXT_ELEMENTS_MAX)):
        _text_of(item, f"{where}.elements[{i}]", TEXT_OBJECT_MAX)


def _check_actions(block: dict[str, Any], where: str) -> None:
    elements = _elements(block, where, ACTIONS_MAX)
    ids = [e.get("action_id") for e in elements if isinstance(e, dict) and e.get("action_id") is not None]
    if len(ids) != len(set(ids)):
        raise _blocks_error(where, "action_id repeated")
    for i, item in enumerate(elements):
        _check_button(item, f"{where}.elements[{i}]")


def _check_divider(block: dict[str, Any], where: str) -> None:
    """A divider has nothing to check."""


_BLOCK_CHECKS: dict[str, Callable[[dict[str, Any], str], None]] = {
    "header": _check_header,
    "section": _check_section,
    "context": _check_context,
    "actions": _check_actions,
    "divider": _check_divider,
}


def _check_block(block: Any, where: str) -> None:
    if not isinstance(block, dict):
        raise _blocks_error(where, "not an object")
    block_id = block.get("block_id")
    if block_id is not None and (not isinstance(block_id, str) or len(block_id) > ID_MAX):
        raise _blocks_error(f"{where}.block_id", f"longer than {ID_MAX} characters")
    check = _BLOCK_CHECKS.get(str(block.get("type")))
    if check is None:
        raise _blocks_error(where, f"block type {block.get('type')!r} is not imitated")
    check(block, where)


def check_message(body: Any) -> None:
    """Raise RefusedError with Slack's error code when Slack would refuse this message body."""
    if not isinstance(body, dict):
        raise RefusedError("invalid_payload", "not a JSON object")
    text, found = body.get("text"), body.get("blocks")
    if not (isinstance(text, str) and text) and not found:
        raise RefusedError("no_text")
    if text is not None and (not isinstance(text, str) or len(text) > MESSAGE_TEXT_MAX):
        raise RefusedError("msg_too_long", f"text longer than {MESSAGE_TEXT_MAX} characters")
    if found is None:
        return
    if not isinstance(found, list) or len(found) > MAX_BLOCKS:
        raise _blocks_error("blocks", f"at most {MAX_BLOCKS} blocks")
    for i, block in enumerate(found):
        _check_block(block, f"blocks[{i}]")


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def readable(vendor: str, hook: str, body: dict[str, Any], at: float) -> ReceivedChat:
    """The message as a person reads it: the header as title, sections and context lines as text, the buttons."""
    title, lines, actions = "", [], []
    for block in body.get("blocks") or []:
        kind = block.get("type")
        if kind == "header" and not title:
            title = block["text"]["text"]
        elif kind == "section":
            if block.get("text") is not None:
                lines.append(unescape(block["text"]["text"]))
            lines += [unescape(f["text"]) for f in block.get("fields") or []]
        elif kind == "context":
            lines += [unescape(e["text"]) for e in block["elements"]]
        elif kind == "actions":
            actions += [(e["text"]["text"], e.get("url", "")) for e in block["elements"]]
    text = "\n".join(lines) if lines else unescape(str(body.get("text", "")))
    mentions = tuple(m.split("|")[0][2:] for m in _mention_tokens("\n".join(lines) + str(body.get("text", ""))))
    return ReceivedChat(
        vendor, hook, title or unescape(str(body.get("text", ""))), text, tuple(actions), mentions, body, at
    )


def _mention_tokens(text: str) -> list[str]:
    """Slack's user mentions in mrkdwn: ``<@U0123|name>`` or ``<@U0123>``."""
    found, rest = [], text
    while (start := rest.find("<@")) >= 0:
        end = rest.find(">", start)
        if end < 0:
            break
        found.append(rest[start:end])
        rest = rest[end + 1 :]
    return found


def _json(status: int, value: Any, headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    return Answer(status, orjson.dumps(value), "application/json; charset=utf-8", headers)


def _text(status: int, text: str) -> Answer:
    return Answer(status, text.encode(), "text/plain")


@dataclass
class SlackVendor:
    """Slack's webhooks and Web API. ``hooks``: valid webhook paths (``/services/T…/B…/secret``);
    ``tokens``: valid bot tokens; ``channels``: channel ids the bot may post to; ``archived``: hook paths and
    channel ids whose channel is archived."""

    hooks: set[str] = field(default_factory=set)
    tokens: set[str] = field(default_factory=set)
    channels: set[str] = field(default_factory=set)
    archived: set[str] = field(default_factory=set)
    vendor: str = "slack"
    prefix: str = "/slack"
    limit: Limit | None = field(default_factory=lambda: Limit(3, 3.0))
    """About one message a second per channel, a short burst tolerated (docs.slack.dev rate limits)."""
    updates: list[tuple[str, ReceivedChat]] = field(default_factory=list)
    """(ts, the message as redrawn) of every accepted chat.update."""
    posted: dict[tuple[str, str], ReceivedChat] = field(default_factory=dict)
    """(channel, ts) → the message as it reads now (after any update)."""
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hook_of(self, request: Request) -> str:
        if request.path.startswith(API_PREFIX):
            body = _load(request.body)
            channel = body.get("channel") if isinstance(body, dict) else None
            return channel if isinstance(channel, str) else "?"
        return request.path

    def handle(self, request: Request, now: float) -> tuple[Answer, ReceivedChat | None]:
        if request.path.startswith(API_PREFIX):
            return self._api(request, now)
        return self._webhook(request, now)

    def rejected(self, request: Request, why: str) -> Answer:
        if request.path.startswith(API_PREFIX):
            return _json(200, {"ok": False, "error": why})
        return _text(400, why)

    def over_limit(self, request: Request) -> Answer:
        retry = (("Retry-After", RETRY_AFTER_S),)
        if request.path.startswith(API_PREFIX):
            return _json(429, {"ok": False, "error": "ratelimited"}, retry)
        return Answer(429, b"rate_limited", "text/plain", retry)

    # --- incoming webhooks ---------------------------------------------------------------------------------
    def _webhook(self, request: Request, now: float) -> tuple[Answer, ReceivedChat | None]:
        if request.method != "POST":
            return _text(405, "invalid_method"), None
        if request.path not in self.hooks:
            return _text(404, "no_service"), None
        if request.path in self.archived:
            return _text(410, "channel_is_archived"), None
        body = _load(request.body)
        if body is None:
            return _text(400, "invalid_payload"), None
        try:
            check_message(body)
        except RefusedError as refused:
            return _text(400, refused.code), None
        return _text(200, "ok"), readable(self.vendor, request.path, body, now)

    # --- Web API -------------------------------------------------------------------------------------------
    def _api(self, request: Request, now: float) -> tuple[Answer, ReceivedChat | None]:
        method = request.path[len(API_PREFIX) :]
        if method not in ("chat.postMessage", "chat.update"):
            return _json(404, {"ok": False, "error": "unknown_method"}), None
        try:
            channel, body = self._checked(request)
            if method == "chat.postMessage":
                return self._post(channel, body, now)
            return self._update(channel, body, now)
        except RefusedError as refused:
            answer: dict[str, Any] = {"ok": False, "error": refused.code}
            if refused.detail:
                answer["response_metadata"] = {"messages": [f"[ERROR] {refused.detail}"]}
            return _json(200, answer), None

    def _checked(self, request: Request) -> tuple[str, dict[str, Any]]:
        """The channel and body of an API call Slack would carry out, or RefusedError."""
        auth = request.headers.get("authorization", "")
        token = auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else ""
        if not token:
            raise RefusedError("not_authed")
        if token not in self.tokens:
            raise RefusedError("invalid_auth")
        body = _load(request.body)
        if not isinstance(body, dict):
            raise RefusedError("invalid_json")
        channel = body.get("channel")
        if not isinstance(channel, str) or channel not in self.channels:
            raise RefusedError("channel_not_found")
        if channel in self.archived:
            raise RefusedError("is_archived")
        check_message(body)
        return channel, body

    def _post(self, channel: str, body: dict[str, Any], now: float) -> tuple[Answer, ReceivedChat]:
        ts = f"{int(now)}.{next(self._seq):06d}"
        seen = readable(self.vendor, channel, {**body, "ts": ts}, now)
        with self._lock:
            self.posted[(channel, ts)] = seen
        return _json(200, {"ok": True, "channel": channel, "ts": ts}), seen

    def _update(self, channel: str, body: dict[str, Any], now: float) -> tuple[Answer, ReceivedChat]:
        ts = body.get("ts")
        with self._lock:
            if not isinstance(ts, str) or (channel, ts) not in self.posted:
                raise RefusedError("message_not_found")
            seen = readable(self.vendor, channel, body, now)
            self.posted[(channel, ts)] = seen
            self.updates.append((ts, seen))
        return _json(200, {"ok": True, "channel": channel, "ts": ts, "text": body.get("text", "")}), seen


def _load(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
