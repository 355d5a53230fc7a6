"""Slack's Block Kit and Teams' Adaptive Card renderers keep within every vendor limit, whatever the message."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from deploy.local.vendors import slack as slack_vendor
from deploy.local.vendors import teams as teams_vendor
from services.notifier.channels import slack, teams
from services.notifier.channels.base import CUT_MARKER, ActionLink, Mention, Message, http_error
from services.notifier.channels.registry import REGISTRY
from services.notifier.config import NotifyConfig

HUGE = Message(
    "assignment",
    "[P1] " + "Very long subject 😀 " * 500,
    'Line <one> & "two" 日志 😀\\\n\u0001' * 40_000,
    {"ticket_id": "tl-9"},
    actions=(
        ActionLink("take", "Too long a link", "https://x.test/" + "u" * 3000),
        *(ActionLink("ack", "Acknowledge " * 20, f"https://x.test/act/{i}") for i in range(40)),
    ),
    mention=Mention("Olga " * 2000, mobile="13800000000"),
)


def texts(value: Any) -> list[str]:
    """Every string inside a rendered value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in texts(v)]
    return []


def test_slack_blocks_of_a_huge_message_keep_every_limit() -> None:
    rendered = slack.blocks(HUGE)
    slack_vendor.check_message({"text": slack.fallback_text(HUGE), "blocks": rendered})  # the imitation's checks
    kinds = [b["type"] for b in rendered]
    assert kinds == ["header", "section", "context", "actions"]
    header, section, _, actions = rendered
    assert slack.utf16_len(header["text"]["text"]) <= 150
    assert slack.utf16_len(section["text"]["text"]) <= 3000
    assert section["text"]["text"].endswith(CUT_MARKER)
    assert len(actions["elements"]) == 25
    assert all(slack.utf16_len(b["text"]["text"]) <= 75 for b in actions["elements"])
    assert len({b["action_id"] for b in actions["elements"]}) == 25
    assert "https://x.test/" + "u" * 3000 not in texts(rendered)  # a link Slack would refuse is left out


def test_slack_text_is_escaped_and_never_ends_in_half_an_entity() -> None:
    message = Message("assignment", "s", "<!channel> & " + "&" * 5000)
    text = slack.blocks(message)[1]["text"]["text"]
    assert text.startswith("&lt;!channel&gt; &amp; ")
    body = text.removesuffix(CUT_MARKER)
    assert body.endswith("&amp;")
    assert slack.utf16_len(text) <= 3000


def test_a_short_slack_message_is_whole_with_no_marker() -> None:
    message = Message("assignment", "[P1] tl-1", "Disk full\nOwner: ops", {}, (ActionLink("ack", "Ack", "https://a"),))
    assert slack.payload(message) == {
        "text": "[P1] tl-1",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "[P1] tl-1", "emoji": True}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "Disk full\nOwner: ops"}},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Ack"},
                        "url": "https://a",
                        "action_id": "ticketloop_ack",
                        "value": "https://a",
                    }
                ],
            },
        ],
    }


@given(st.text(), st.integers(min_value=0, max_value=200))
def test_cut_chars_fits_and_keeps_a_prefix(text: str, limit: int) -> None:
    cut = slack.cut_chars(text, limit)
    assert slack.utf16_len(cut) <= limit
    if slack.utf16_len(text) <= limit:
        assert cut == text
    else:
        assert text.startswith(cut.removesuffix(CUT_MARKER))


def test_teams_body_of_a_huge_message_fits_and_passes_the_imitation() -> None:
    body = teams.payload(HUGE)
    assert len(body) <= teams.MAX_BYTES
    cards = teams_vendor.check_message(orjson.loads(body))
    seen = teams_vendor.readable("/hook", cards, {}, 0.0)
    assert CUT_MARKER.strip() in seen.text
    assert len(seen.actions) == 41


@given(st.text(min_size=1, max_size=3000), st.integers(min_value=500, max_value=4000))
def test_teams_body_fits_any_budget_and_keeps_short_text_whole(text: str, budget: int) -> None:
    message = Message("assignment", "subject", text)
    body = teams.payload(message, budget)
    assert len(body) <= budget
    shown = orjson.loads(body)["attachments"][0]["content"]["body"][1]["text"]
    assert shown == text or shown.endswith(CUT_MARKER)


def test_slack_and_teams_are_registered_and_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_SLACK_BOT_TOKEN", "xoxb-1-2-abc")
    config = NotifyConfig.model_validate(
        {
            "teams": {
                "ops": {
                    "channels": [
                        {"type": "slack", "name": "ops-slack", "url": "https://hooks.slack.com/services/T/B/x"},
                        {"type": "slack", "name": "ops-bot", "token_env": "OPS_SLACK_BOT_TOKEN", "channel": "C012AB"},
                        {"type": "teams", "name": "ops-teams", "url": "https://prod.logic.azure.com/workflows/1"},
                    ]
                }
            }
        }
    )
    assert [type(c).__name__ for c in config.entries()] == ["SlackConfig", "SlackConfig", "TeamsConfig"]
    assert REGISTRY["slack"].limit == slack.KIND.limit
    assert REGISTRY["teams"].config is teams.TeamsConfig


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"url": "https://hooks.slack.com/x", "token": "xoxb-1"}, "not both"),
        ({}, "give a webhook"),
        ({"token": "xoxb-1"}, "needs 'channel'"),
        ({"token": "xoxp-user-token-secret", "channel": "C012AB"}, "bot token"),
        ({"url": "https://hooks.slack.com/x", "channel": "C012AB"}, "go with a bot token"),
        ({"token": "xoxb-1", "channel": "general"}, "channel"),
    ],
)
def test_a_slack_entry_posts_one_way_and_says_what_is_wrong(fields: dict[str, Any], why: str) -> None:
    with pytest.raises(ValidationError) as caught:
        slack.SlackConfig.model_validate({"name": "s", **fields})
    assert why in str(caught.value)
    assert "xoxp-user-token-secret" not in str(caught.value)


def test_slack_answers_are_classified_by_their_error_code() -> None:
    def error(answer: dict[str, Any]) -> tuple[str, bool] | None:
        found = slack.api_error("slack", "ops", answer)
        return None if found is None else (str(found), found.retryable)

    assert error({"ok": True, "ts": "1.2"}) is None
    assert error({"ok": False, "error": "invalid_auth"}) == ("slack ops: invalid_auth", False)
    assert error({"ok": False, "error": "internal_error"}) == ("slack ops: internal_error", True)
    assert error({"ok": False, "error": "https://hooks.slack.com/secret"}) == ("slack ops: unreadable answer", True)
    assert error({}) == ("slack ops: unreadable answer", True)


def test_a_bot_entry_config_keeps_its_token_out_of_repr() -> None:
    entry = slack.SlackConfig(name="b", token=SecretStr("xoxb-very-secret"), channel="C012AB")
    assert "xoxb-very-secret" not in repr(entry)


@pytest.mark.parametrize(
    ("status", "retry_after", "retryable", "after"),
    [
        (429, "30", True, 30.0),
        (429, " 7 ", True, 7.0),
        (429, "Wed, 21 Oct 2026 07:28:00 GMT", True, None),
        (429, "\u00b2", True, None),
        (400, "\u00b2", False, None),
        (503, None, True, None),
    ],
)
def test_an_http_error_keeps_a_retry_after_of_whole_seconds_only(
    status: int, retry_after: str | None, retryable: bool, after: float | None
) -> None:
    """A Retry-After of digits "²" was taken by str.isdigit and refused by float(): a ValueError instead of the
    error, which the lane then retried as a channel fault even for a final 400."""
    error = http_error("slack", "ops", status, retry_after)
    assert (error.retryable, error.retry_after_s) == (retryable, after)
    assert str(error) == f"slack ops: HTTP {status}"
