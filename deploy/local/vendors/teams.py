"""Microsoft Teams' imitation: a Workflows (Power Automate) webhook under ``/teams/...``.

A known set of webhook paths (the URL is the secret; others 404). The body must be JSON: ``type`` "message"
and ``attachments``, each an Adaptive Card (``contentType`` application/vnd.microsoft.card.adaptive, ``content``
of type AdaptiveCard with a ``body`` list; TextBlocks need text, Action.OpenUrl needs an http(s) url). Over
about 28 KB it answers 413; otherwise 202 Accepted.

The real service answers 202 as soon as the flow is triggered; a card that is malformed or too large then fails
inside the flow run and nothing appears in the channel. The imitation answers 400/413 instead, so a test sees
what a person would have missed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from deploy.local.vendors.base import Answer, Limit, ReceivedChat, Request, one_of

MAX_BYTES = 28_000
"""Teams: "the message size limit is approximately 28 KB" (learn.microsoft.com, Microsoft Teams connector)."""
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
CARD_VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5")
RETRY_AFTER_S = "1"


class RefusedError(Exception):
    """Why Teams would not post a card."""


def _error(status: int, code: str, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    return Answer(status, orjson.dumps({"error": {"code": code, "message": message}}), "application/json", headers)


def _check_element(element: Any, where: str) -> None:
    if not isinstance(element, dict) or not isinstance(element.get("type"), str):
        raise RefusedError(f"{where}: an element needs a type")
    if element["type"] == "TextBlock" and not isinstance(element.get("text"), str):
        raise RefusedError(f"{where}: a TextBlock needs text")


def _check_action(action: Any, where: str) -> None:
    if not isinstance(action, dict) or not isinstance(action.get("type"), str):
        raise RefusedError(f"{where}: an action needs a type")
    if action["type"] == "Action.Submit":
        raise RefusedError(f"{where}: Action.Submit is not supported in a webhook card")
    if action["type"] == "Action.OpenUrl":
        url = action.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise RefusedError(f"{where}: Action.OpenUrl needs an http(s) url")


def check_card(content: Any, where: str) -> None:
    """Raise RefusedError naming what makes ``content`` an unacceptable Adaptive Card."""
    if not isinstance(content, dict) or content.get("type") != "AdaptiveCard":
        raise RefusedError(f"{where}: type must be AdaptiveCard")
    if not one_of(content.get("version"), CARD_VERSIONS):
        raise RefusedError(f"{where}.version: one of {', '.join(CARD_VERSIONS)}")
    body = content.get("body")
    if not isinstance(body, list):
        raise RefusedError(f"{where}.body: must be a list")
    for i, element in enumerate(body):
        _check_element(element, f"{where}.body[{i}]")
    actions = content.get("actions", [])
    if not isinstance(actions, list):
        raise RefusedError(f"{where}.actions: must be a list")
    for i, action in enumerate(actions):
        _check_action(action, f"{where}.actions[{i}]")


def check_message(body: Any) -> list[dict[str, Any]]:
    """The Adaptive Cards of a webhook body, or RefusedError saying why Teams would not post it."""
    if not isinstance(body, dict) or body.get("type") != "message":
        raise RefusedError('type must be "message"')
    attachments = body.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        raise RefusedError("attachments: at least one card")
    cards = []
    for i, attachment in enumerate(attachments):
        where = f"attachments[{i}]"
        if not isinstance(attachment, dict) or attachment.get("contentType") != ADAPTIVE_CARD:
            raise RefusedError(f"{where}.contentType: must be {ADAPTIVE_CARD}")
        check_card(attachment.get("content"), f"{where}.content")
        cards.append(attachment["content"])
    return cards


def readable(hook: str, cards: list[dict[str, Any]], body: dict[str, Any], at: float) -> ReceivedChat:
    """The first TextBlock is the title; the other TextBlocks are the text; OpenUrl actions are the buttons."""
    blocks = [e["text"] for c in cards for e in c["body"] if e["type"] == "TextBlock"]
    actions = tuple(
        (str(a.get("title", "")), a["url"])
        for c in cards
        for a in c.get("actions", [])
        if a["type"] == "Action.OpenUrl"
    )
    mentions = tuple(
        str(m.get("mentioned", {}).get("name", ""))
        for c in cards
        for m in (c.get("msteams") or {}).get("entities", [])
        if isinstance(m, dict) and m.get("type") == "mention"
    )
    title = blocks[0] if blocks else ""
    return ReceivedChat("teams", hook, title, "\n".join(blocks[1:]), actions, mentions, body, at)


@dataclass
class TeamsVendor:
    """Teams Workflows webhooks; ``hooks``: the valid paths (``/workflows/<id>/triggers/manual/paths/invoke``)."""

    hooks: set[str] = field(default_factory=set)
    vendor: str = "teams"
    prefix: str = "/teams"
    limit: Limit | None = field(default_factory=lambda: Limit(4, 1.0))
    """Teams webhooks: at most 4 requests a second (learn.microsoft.com, "Rate limiting for connectors")."""

    def hook_of(self, request: Request) -> str:
        return request.path

    def handle(self, request: Request, now: float) -> tuple[Answer, ReceivedChat | None]:
        if request.method != "POST":
            return _error(405, "MethodNotAllowed", "POST only"), None
        if request.path not in self.hooks:
            return _error(404, "NotFound", "no such workflow"), None
        if len(request.body) > MAX_BYTES:
            return _error(413, "RequestEntityTooLarge", f"over {MAX_BYTES} bytes"), None
        if "application/json" not in request.headers.get("content-type", ""):
            return _error(400, "InvalidContentType", "send application/json"), None
        try:
            body = orjson.loads(request.body)
            cards = check_message(body)
        except (orjson.JSONDecodeError, RefusedError) as exc:
            return _error(400, "BadRequest", str(exc)), None
        return Answer(202, b"", "text/plain"), readable(request.path, cards, body, now)

    def rejected(self, request: Request, why: str) -> Answer:  # noqa: ARG002
        return _error(400, "BadRequest", why)

    def over_limit(self, request: Request) -> Answer:  # noqa: ARG002
        return _error(429, "TooManyRequests", "throttled", (("Retry-After", RETRY_AFTER_S),))
