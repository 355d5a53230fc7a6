"""Slack: an incoming webhook (the URL is the secret) or a bot token posting with chat.postMessage.

Either way the message is Block Kit: a header (the subject), a section (the text as mrkdwn), a context line
naming the person, and one link button per action. Slack refuses a block over its limits, so every part is cut
to fit (the text with the cut marker); Slack cannot mention by mobile number, so the person is named.

A bot-token entry remembers the ``ts`` of the last message it posted per ticket (``ChannelContext.refs``: the
notifier's ``chat_messages`` table, so a restart forgets nothing), and ``update`` redraws that message
(chat.update) when the ticket changes; an incoming webhook cannot edit what it posted.

    channels:
      - {type: slack, name: ops-slack, url_env: OPS_SLACK_WEBHOOK_URL}
      - {type: slack, name: ops-bot, token_env: OPS_SLACK_BOT_TOKEN, channel: C0123456789}
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import orjson
from pydantic import Field, SecretStr, model_validator

from services.notifier.channels.base import (
    CUT_MARKER,
    STATE,
    Answer,
    ChannelConfig,
    ChannelContext,
    ChannelKind,
    DeliveryError,
    EnvName,
    Message,
    RateLimit,
    SecretUrl,
    http_error,
    post,
)
from shared.infra.logging import get_logger

log = get_logger(__name__)
DEFAULT_API_URL = "https://slack.com/api"
# Block Kit limits (docs.slack.dev, reference/block-kit): characters, not bytes.
MAX_BLOCKS = 50
HEADER_MAX = 150
SECTION_TEXT_MAX = 3000
CONTEXT_TEXT_MAX = 3000
BUTTON_TEXT_MAX = 75
BUTTON_URL_MAX = 3000
BUTTON_VALUE_MAX = 2000
ACTION_ID_MAX = 255
ACTIONS_MAX = 25
FALLBACK_TEXT_MAX = 3000
NAME_MAX = 200
RETRYABLE_API_ERRORS = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited", "rate_limited"}
)
"""chat.postMessage's ``{"ok": false}`` errors that may pass on their own; the others (invalid_auth,
channel_not_found, is_archived, ...) need a person to fix the configuration."""
_ERROR_CODE = re.compile(r"^[a-z0-9_]{1,64}$")
_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,3}$")


class SlackConfig(ChannelConfig):
    """An incoming webhook (``url``/``url_env``) or a bot token (``token``/``token_env``) and a ``channel`` id."""

    type: Literal["slack"] = "slack"
    url: SecretUrl | None = None
    url_env: EnvName | None = None
    token: SecretStr | None = None
    token_env: EnvName | None = None
    channel: str | None = Field(default=None, pattern=r"^[CDG][A-Z0-9]{2,}$")
    api_url: str | None = Field(default=None, pattern=r"^https?://\S+$", max_length=2048)
    """Slack's Web API root (default https://slack.com/api); tests point it at the local imitation."""

    @model_validator(mode="after")
    def _one_way_to_post(self) -> SlackConfig:
        self.exactly_one("url", required=False)
        self.exactly_one("token", required=False)
        by_url = self.url is not None or self.url_env is not None
        by_token = self.token is not None or self.token_env is not None
        if by_url and by_token:
            raise ValueError("give a webhook URL or a bot token, not both")
        if not (by_url or by_token):
            raise ValueError("give a webhook ('url' or 'url_env') or a bot token ('token' or 'token_env')")
        if by_url and (self.channel is not None or self.api_url is not None):
            raise ValueError("'channel' and 'api_url' go with a bot token; a webhook URL already names its channel")
        if by_token:
            if self.channel is None:
                raise ValueError("a bot token needs 'channel' (a channel id such as C0123456789)")
            token = self.secret_of("token")
            if token is None or not token.get_secret_value().startswith("xoxb-"):
                raise ValueError("the token must be a bot token (it starts with 'xoxb-')")
        return self


def utf16_len(text: str) -> int:
    """Length as Slack may count it (UTF-16 code units): never less than the number of characters."""
    return len(text.encode("utf-16-le", errors="surrogatepass")) // 2


def cut_chars(text: str, max_chars: int, marker: str = CUT_MARKER) -> str:
    """``text`` within ``max_chars`` (UTF-16 units): whole as it is, or cut at a character boundary with ``marker``."""
    if utf16_len(text) <= max_chars:
        return text
    if utf16_len(marker) >= max_chars:
        marker = ""
    room = max(0, max_chars - utf16_len(marker))
    head = text.encode("utf-16-le", errors="surrogatepass")[: room * 2]
    return head.decode("utf-16-le", errors="ignore") + marker


def mrkdwn_escape(text: str) -> str:
    """Slack's three control characters in text: &, < and > (everything else is shown as written)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn(text: str, max_chars: int) -> str:
    """``text`` escaped for mrkdwn and cut to ``max_chars`` without leaving half an entity before the marker."""
    escaped = mrkdwn_escape(text)
    if utf16_len(escaped) <= max_chars:
        return escaped
    marker = CUT_MARKER if utf16_len(CUT_MARKER) < max_chars else ""
    head = cut_chars(escaped, max_chars - utf16_len(marker), "")
    return _PARTIAL_ENTITY.sub("", head) + marker


def plain(text: str, max_chars: int) -> dict[str, Any]:
    """A plain_text object (never empty: Slack refuses an empty text)."""
    return {"type": "plain_text", "text": cut_chars(text, max_chars, "…") or "-", "emoji": True}


def button(action: str, label: str, url: str, action_id: str) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": cut_chars(label or action, BUTTON_TEXT_MAX, "…") or "-"},
        "url": url,
        "action_id": action_id[:ACTION_ID_MAX],
    }
    if len(url) <= BUTTON_VALUE_MAX:
        element["value"] = url
    return element


def buttons(message: Message) -> list[dict[str, Any]]:
    """One link button per action (at most 25; a link too long for Slack is left out, not cut into a wrong one)."""
    found: list[dict[str, Any]] = []
    ids: set[str] = set()
    for link in message.actions:
        if len(found) == ACTIONS_MAX:
            break
        if not link.url or len(link.url) > BUTTON_URL_MAX:
            continue
        action_id = f"ticketloop_{link.action}"[:ACTION_ID_MAX]
        if action_id in ids:
            action_id = f"{action_id[: ACTION_ID_MAX - 8]}_{len(found)}"
        ids.add(action_id)
        found.append(button(link.action, link.label, link.url, action_id))
    return found


def blocks(message: Message) -> list[dict[str, Any]]:
    """The message as Block Kit blocks, each within Slack's limits (the text cut with the marker)."""
    rendered: list[dict[str, Any]] = [
        {"type": "header", "text": plain(message.subject, HEADER_MAX)},
        {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn(message.text, SECTION_TEXT_MAX) or "-"}},
    ]
    if message.mention is not None:
        name = mrkdwn(cut_chars(message.mention.name, NAME_MAX, "…"), CONTEXT_TEXT_MAX)
        rendered.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"For *{name}*"}]})
    links = buttons(message)
    if links:
        rendered.append({"type": "actions", "elements": links})
    return rendered[:MAX_BLOCKS]


def fallback_text(message: Message) -> str:
    """The top-level ``text``: what notifications and screen readers show."""
    return mrkdwn(message.subject, FALLBACK_TEXT_MAX) or "ticketloop"


def payload(message: Message) -> dict[str, Any]:
    return {"text": fallback_text(message), "blocks": blocks(message)}


def api_error(kind: str, name: str, answer: Mapping[str, Any]) -> DeliveryError | None:
    """The error of a Web API answer (HTTP 200 with ``ok: false``), or None when it is ``ok``."""
    if answer.get("ok") is True:
        return None
    code = answer.get("error")
    if not isinstance(code, str) or not _ERROR_CODE.match(code):
        return DeliveryError(f"{kind} {name}: unreadable answer", retryable=True)
    return DeliveryError(f"{kind} {name}: {code}", retryable=code in RETRYABLE_API_ERRORS)


def raise_for_answer(kind: str, name: str, answer: Mapping[str, Any]) -> None:
    error = api_error(kind, name, answer)
    if error is not None:
        raise error


def webhook_error(kind: str, name: str, response: Answer) -> DeliveryError:
    """A webhook's refusal: the HTTP status decides, Slack's error code (e.g. channel_is_archived) is named."""
    error = http_error(kind, name, response.status_code, response.headers.get("retry-after"))
    code = response.text.strip()[:64]
    if _ERROR_CODE.match(code):
        return DeliveryError(f"{error} {code}", retryable=error.retryable, retry_after_s=error.retry_after_s)
    return error


class SlackChannel:
    kind = "slack"

    def __init__(self, entries: Mapping[str, SlackConfig], context: ChannelContext) -> None:
        self._entries, self._http = entries, context.http
        self._urls = {n: u.get_secret_value() for n, e in entries.items() if (u := e.secret_of("url")) is not None}
        self._tokens = {n: t for n, e in entries.items() if (t := e.secret_of("token")) is not None}
        self._refs = context.refs

    async def send(self, message: Message, target: str) -> None:
        """Post the message; a ``state`` message redraws the ticket's last one instead (nothing to redraw: a
        webhook entry, or a ticket never posted by a bot, is nothing to do)."""
        entry = self._entries.get(target)
        if entry is None:
            raise DeliveryError(f"slack: no entry named {target!r}", retryable=False)
        if message.kind == STATE:
            await self.update(message, target)
            return
        body = payload(message)
        if target in self._urls:
            await self._post_webhook(target, body)
            return
        answer = await self._call(target, "chat.postMessage", {"channel": entry.channel, **body})
        raise_for_answer(self.kind, target, answer)
        ticket_id = message.data.get("ticket_id")
        ts = answer.get("ts")
        if isinstance(ticket_id, str) and isinstance(ts, str):
            try:
                await self._refs.put(target, ticket_id, ts)
            except Exception as exc:  # noqa: BLE001 - the message is posted: an error here must not post it again
                log.warning("slack_ts_not_kept", error=type(exc).__name__, target=target)

    async def update(self, message: Message, target: str) -> bool:
        """Redraw the last message posted for this message's ticket (chat.update); False when there is none to
        redraw (a webhook entry, a ticket never posted by this entry, or a message Slack no longer has)."""
        entry = self._entries.get(target)
        ticket_id = message.data.get("ticket_id")
        if entry is None or not isinstance(ticket_id, str):
            return False
        try:
            ts = await self._refs.get(target, ticket_id)
        except Exception as exc:  # noqa: BLE001 - the database is down: nothing known to redraw (not Slack's fault,
            # so not a failure against this target's breaker, which would hold its new messages too)
            log.warning("slack_ts_not_read", error=type(exc).__name__, target=target)
            return False
        if ts is None:
            return False
        answer = await self._call(target, "chat.update", {"channel": entry.channel, "ts": ts, **payload(message)})
        if answer.get("error") == "message_not_found":
            await self._refs.forget(target, ticket_id)
            return False
        raise_for_answer(self.kind, target, answer)
        return True

    async def _post_webhook(self, target: str, body: dict[str, Any]) -> None:
        response = await post(self._http, self.kind, target, self._urls[target], orjson.dumps(body))
        if response.status_code >= 300:
            raise webhook_error(self.kind, target, response)

    async def _call(self, target: str, method: str, body: dict[str, Any]) -> dict[str, Any]:
        entry, token = self._entries[target], self._tokens[target]
        url = f"{(entry.api_url or DEFAULT_API_URL).rstrip('/')}/{method}"
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Authorization": f"Bearer {token.get_secret_value()}",
        }
        response = await post(self._http, self.kind, target, url, orjson.dumps(body), headers)
        if response.status_code != 200:
            raise http_error(self.kind, target, response.status_code, response.headers.get("retry-after"))
        try:
            answer: Any = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            answer = None
        return answer if isinstance(answer, dict) else {}


def build(entries: Sequence[SlackConfig], context: ChannelContext) -> SlackChannel:
    return SlackChannel({e.name: e for e in entries}, context)


KIND = ChannelKind(
    kind="slack",
    config=SlackConfig,
    build=build,
    # about one a second per channel, short bursts allowed (Slack's docs): three in any three seconds, which two
    # notifier workers can share (one in three seconds each: ``stages.shared_limit``), as one a second cannot
    limit=RateLimit(3, 3.0),
    max_bytes=SECTION_TEXT_MAX,
    summary="Block Kit message by incoming webhook (the URL is the secret) or bot token (chat.postMessage; "
    "redrawn with chat.update when someone acts on the ticket)",
    redraws=True,
)
