"""Microsoft Teams: an Adaptive Card posted to a Workflows (Power Automate) webhook; the URL is the secret.

The card has the subject (bold), the text, the person it is for, and one Action.OpenUrl button per action.
Teams refuses a message over about 28 KB (HTTP 413), so the text is cut with the marker until the whole body
fits our budget, kept well under that (Teams counts the message it renders, not our JSON).
Workflows answers 202 Accepted once the flow has the request.

    channels:
      - {type: teams, name: ops-teams, url_env: OPS_TEAMS_WORKFLOW_URL}
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from services.notifier.channels.base import (
    ChannelKind,
    Message,
    RateLimit,
    UrlChannel,
    UrlChannelConfig,
    cut_utf8,
    http_error,
    post,
)

MAX_BYTES = 20_000
"""Our budget for the whole JSON body: Teams documents "about 28 KB" for the message it renders."""
TITLE_MAX_BYTES = 1_000
LABEL_MAX_BYTES = 200
NAME_MAX_BYTES = 200
CARD_VERSION = "1.4"
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"


class TeamsConfig(UrlChannelConfig):
    type: Literal["teams"] = "teams"


def card(message: Message, text: str) -> dict[str, Any]:
    """The Adaptive Card of ``message`` with ``text`` as its body text."""
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": cut_utf8(message.subject, TITLE_MAX_BYTES, "…"),
            "weight": "Bolder",
            "wrap": True,
        },
        {"type": "TextBlock", "text": text, "wrap": True},
    ]
    if message.mention is not None:
        name = cut_utf8(message.mention.name, NAME_MAX_BYTES, "…")
        body.append({"type": "TextBlock", "text": f"For: {name}", "isSubtle": True, "wrap": True})
    actions = [
        {"type": "Action.OpenUrl", "title": cut_utf8(a.label or a.action, LABEL_MAX_BYTES, "…"), "url": a.url}
        for a in message.actions
        if a.url
    ]
    return {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": body,
        "actions": actions,
    }


def envelope(content: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {"type": "message", "attachments": [{"contentType": ADAPTIVE_CARD, "contentUrl": None, "content": content}]}
    )


def payload(message: Message, max_bytes: int = MAX_BYTES) -> bytes:
    """The body, at most ``max_bytes``: the text whole, or cut with the marker (JSON escapes counted)."""
    body = envelope(card(message, message.text))
    room = max_bytes - len(envelope(card(message, "")))
    while len(body) > max_bytes and room > 0:
        body = envelope(card(message, cut_utf8(message.text, room)))
        room -= max(1, len(body) - max_bytes)
    return body


class TeamsChannel(UrlChannel):
    kind = "teams"

    async def send(self, message: Message, target: str) -> None:
        url, _ = self._entry(target)
        response = await post(self._http, self.kind, target, url, payload(message))
        if response.status_code >= 300:
            raise http_error(self.kind, target, response.status_code, response.headers.get("retry-after"))


build = TeamsChannel


KIND = ChannelKind(
    kind="teams",
    config=TeamsConfig,
    build=build,
    limit=RateLimit(4, 1.0),
    max_bytes=MAX_BYTES,
    summary="Adaptive Card posted to a Teams Workflows webhook (the URL is the secret)",
)
