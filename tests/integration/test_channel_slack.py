"""The Slack channel against its local imitation: the channel contract for an incoming webhook and for a bot
token, what the imitation refuses (every Block Kit limit, an unknown hook, a wrong token), chat.update redrawing
a ticket's message, and a 429's Retry-After reaching the DeliveryError."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from deploy.local.kafka_local import free_port
from deploy.local.vendors.base import Answer, VendorSink
from deploy.local.vendors.slack import SlackVendor
from services.notifier.channels.base import ChannelContext, DeliveryError, Http, Message
from services.notifier.channels.slack import SlackChannel, SlackConfig, build, payload
from services.notifier.refs import MemoryRefs, StoredRefs
from shared.store import db
from shared.store.runner import SqlRunner
from tests.support.channel_contract import ContractCase, check_contract, context, sample_message

pytestmark = pytest.mark.integration

HOOK = "/services/T0000TEST/B0000TEST/webhooksecret0123456789"
TOKEN = "xoxb-1111-2222-tokensecret0123456789"
CHANNEL = "C0123456789"
FROZEN = 1_700_000_000.0


def json_answer(value: dict[str, Any], status: int = 200, retry_after: str | None = None) -> Answer:
    headers = (("Retry-After", retry_after),) if retry_after else ()
    return Answer(status, orjson.dumps(value), "application/json", headers)


def text_answer(status: int, text: str, retry_after: str | None = None) -> Answer:
    headers = (("Retry-After", retry_after),) if retry_after else ()
    return Answer(status, text.encode(), "text/plain", headers)


@pytest.fixture
def vendor() -> SlackVendor:
    return SlackVendor(hooks={HOOK}, tokens={TOKEN}, channels={CHANNEL})


@pytest.fixture
def sink(vendor: SlackVendor) -> Iterator[VendorSink]:
    """A sink whose clock stands still: the rate limit counts requests, never the time tests take."""
    running = VendorSink(free_port(), [vendor], clock=lambda: FROZEN).start()
    yield running
    running.stop()


def webhook_channel(sink: VendorSink, ctx: ChannelContext) -> tuple[SlackChannel, str]:
    entry = SlackConfig(name="ops-slack", url=SecretStr(f"{sink.url}/slack{HOOK}"))
    return build([entry], ctx), "ops-slack"


def bot_channel(sink: VendorSink, ctx: ChannelContext, token: str = TOKEN) -> tuple[SlackChannel, str]:
    entry = SlackConfig(name="ops-bot", token=SecretStr(token), channel=CHANNEL, api_url=f"{sink.url}/slack/api")
    return build([entry], ctx), "ops-bot"


WEBHOOK_CASE = ContractCase(
    kind="slack",
    vendor="slack",
    prefix="/slack/services",
    make=webhook_channel,
    secrets=(HOOK, "webhooksecret0123456789"),
    retryable=(
        text_answer(429, "rate_limited", retry_after="1"),
        text_answer(500, "rollup_error"),
        text_answer(503, "service unavailable"),
    ),
    permanent=(
        text_answer(400, "invalid_payload"),
        text_answer(400, "no_text"),
        text_answer(403, "action_prohibited"),
        text_answer(404, "channel_not_found"),
        text_answer(404, "no_service"),
        text_answer(410, "channel_is_archived"),
    ),
    max_bytes=3000,
    mentions=False,
)

BOT_CASE = ContractCase(
    kind="slack",
    vendor="slack",
    prefix="/slack/api",
    make=bot_channel,
    secrets=(TOKEN, "tokensecret0123456789"),
    retryable=(
        json_answer({"ok": False, "error": "ratelimited"}, status=429, retry_after="3"),
        json_answer({"ok": False, "error": "internal_error"}),
        json_answer({"ok": False, "error": "fatal_error"}),
        json_answer({"ok": False, "error": "service_unavailable"}),
        text_answer(503, "upstream down"),
    ),
    permanent=(
        json_answer({"ok": False, "error": "invalid_auth"}),
        json_answer({"ok": False, "error": "not_authed"}),
        json_answer({"ok": False, "error": "channel_not_found"}),
        json_answer({"ok": False, "error": "is_archived"}),
    ),
    max_bytes=3000,
    mentions=False,
)


@pytest.mark.parametrize("case", [WEBHOOK_CASE, BOT_CASE], ids=["incoming-webhook", "bot-token"])
async def test_slack_keeps_the_channel_contract(case: ContractCase, sink: VendorSink) -> None:
    await check_contract(case, sink)


async def test_the_person_is_named_and_buttons_carry_the_action_ids(sink: VendorSink) -> None:
    channel, target = webhook_channel(sink, context())
    await channel.send(sample_message(), target)
    (seen,) = sink.received("slack")
    assert "Olga Ops" in seen.text
    buttons = [e for b in seen.body["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [(b["action_id"], b["url"]) for b in buttons] == [
        ("ticketloop_ack", "http://127.0.0.1:8080/act/tok-ack"),
        ("ticketloop_take", "http://127.0.0.1:8080/act/tok-take"),
    ]


async def test_chat_update_redraws_the_tickets_message(sink: VendorSink, vendor: SlackVendor) -> None:
    channel, target = bot_channel(sink, context())
    opened = sample_message()
    await channel.send(opened, target)
    ((key, first),) = vendor.posted.items()
    resolved = Message("resolution", "[P1] Resolved tl-1: disk full", "Resolved by olga: cleaned up", dict(opened.data))
    assert await channel.update(resolved, target) is True
    assert [(ts, m.title) for ts, m in vendor.updates] == [(key[1], "[P1] Resolved tl-1: disk full")]
    assert vendor.posted[key].text == "Resolved by olga: cleaned up"
    assert first.actions
    assert vendor.posted[key].actions == ()


async def test_a_state_message_redraws_instead_of_posting(sink: VendorSink, vendor: SlackVendor) -> None:
    channel, target = bot_channel(sink, context())
    await channel.send(sample_message(), target)
    acked = Message(
        "state", "[P1] Acknowledged tl-1: disk full", "Acknowledged by olga (one-click link).", {"ticket_id": "tl-1"}
    )
    await channel.send(acked, target)
    assert len(vendor.posted) == 1, "no new message"
    assert [m.title for _, m in vendor.updates] == ["[P1] Acknowledged tl-1: disk full"]
    hook, hook_target = webhook_channel(sink, context())
    before = len(sink.received("slack"))
    await hook.send(acked, hook_target)  # a webhook cannot redraw: nothing is posted either
    assert len(sink.received("slack")) == before


async def test_update_is_false_without_a_message_to_redraw(sink: VendorSink, vendor: SlackVendor) -> None:
    bot, bot_target = bot_channel(sink, context())
    hook, hook_target = webhook_channel(sink, context())
    other_ticket = Message("update", "s", "t", {"ticket_id": "tl-2"})
    assert await bot.update(other_ticket, bot_target) is False  # never posted
    await hook.send(sample_message(), hook_target)
    assert await hook.update(sample_message(), hook_target) is False  # a webhook cannot edit
    await bot.send(sample_message(), bot_target)
    vendor.posted.clear()  # the message was deleted in Slack
    assert await bot.update(sample_message(), bot_target) is False
    assert vendor.updates == []


async def test_a_restarted_notifier_still_redraws_the_message(
    sink: VendorSink, vendor: SlackVendor, engine: Engine
) -> None:
    """The ts of a posted message is kept in the database (SQLite and PostgreSQL): a channel built anew over it
    (a restart, or another notifier taking the ticket's partition over) redraws that message; one Slack no longer
    has is forgotten."""
    runners, https = [SqlRunner(engine), SqlRunner(engine)], [Http(5.0), Http(5.0)]
    try:
        before, target = bot_channel(sink, ChannelContext(https[0], time.time, StoredRefs(runners[0])))
        await before.send(sample_message(), target)
        ((key, _),) = vendor.posted.items()
        after, _ = bot_channel(sink, ChannelContext(https[1], time.time, StoredRefs(runners[1])))
        acked = Message("state", "[P1] Acknowledged tl-1: disk full", "Acknowledged by olga.", {"ticket_id": "tl-1"})
        await after.send(acked, target)
        assert len(vendor.posted) == 1, "redrawn, not posted anew"
        assert [(ts, m.title) for ts, m in vendor.updates] == [(key[1], "[P1] Acknowledged tl-1: disk full")]
        vendor.posted.clear()  # deleted in Slack: forgotten, in the database too
        assert await after.update(acked, target) is False
        assert db.chat_message_ref(engine, target, "tl-1") is None
    finally:
        for runner, http in zip(runners, https, strict=True):
            runner.dispose()
            await http.close()


class BrokenRefs(MemoryRefs):
    """A database that fails as the ts is kept or read."""

    async def get(self, target: str, ticket_id: str) -> str | None:  # noqa: ARG002 - it fails whatever it is given
        raise OperationalError("SELECT ref FROM chat_messages", {}, Exception("disk I/O error"))

    async def put(self, target: str, ticket_id: str, ref: str) -> None:  # noqa: ARG002 - it fails whatever it is given
        raise OperationalError("INSERT INTO chat_messages", {}, Exception("disk I/O error"))


async def test_a_ts_that_cannot_be_kept_does_not_post_the_message_again(sink: VendorSink, vendor: SlackVendor) -> None:
    """The message is posted: the send succeeds (a lane would otherwise retry it, and Slack would show it twice);
    only its later redraw is lost, and that is no failure of the target's either (its breaker would hold its new
    messages)."""
    http = Http(5.0)
    try:
        channel, target = bot_channel(sink, ChannelContext(http, time.time, BrokenRefs()))
        await channel.send(sample_message(), target)
        assert len(vendor.posted) == 1
        assert await channel.update(sample_message(), target) is False
        acked = Message("state", "[P1] Acknowledged tl-1: disk full", "Acknowledged by olga.", {"ticket_id": "tl-1"})
        await channel.send(acked, target)  # no error: nothing known to redraw
        assert vendor.updates == []
    finally:
        await http.close()


async def test_a_wrong_token_is_a_permanent_error_without_the_token(sink: VendorSink) -> None:
    wrong = "xoxb-9999-wrongtoken"
    channel, target = bot_channel(sink, context(), token=wrong)
    with pytest.raises(DeliveryError) as caught:
        await channel.send(sample_message(), target)
    assert str(caught.value) == "slack ops-bot: invalid_auth"
    assert caught.value.retryable is False
    assert wrong not in repr(caught.value)
    assert sink.received("slack") == []


@pytest.mark.parametrize("make", [webhook_channel, bot_channel], ids=["incoming-webhook", "bot-token"])
async def test_over_the_rate_limit_the_retry_after_reaches_the_error(sink: VendorSink, make: Any) -> None:
    channel, target = make(sink, context())
    for _ in range(3):  # the imitation tolerates a burst of three in its window (its clock stands still)
        await channel.send(sample_message(), target)
    with pytest.raises(DeliveryError) as caught:
        await channel.send(sample_message(), target)
    assert caught.value.retryable is True
    assert caught.value.retry_after_s == 1.0
    assert len(sink.received("slack")) == 3
    assert sink.rejections[-1][2] == "over the rate limit"


async def test_a_programmed_retry_after_is_carried_as_given(sink: VendorSink) -> None:
    channel, target = webhook_channel(sink, context())
    sink.answer_next("/slack/services", text_answer(429, "rate_limited", retry_after="30"))
    with pytest.raises(DeliveryError) as caught:
        await channel.send(sample_message(), target)
    assert caught.value.retry_after_s == 30.0


# --- what the imitation refuses ----------------------------------------------------------------------------


def button(text: str = "Acknowledge", url: str = "https://x.test/a") -> dict[str, Any]:
    return {"type": "button", "text": {"type": "plain_text", "text": text}, "url": url, "action_id": "a"}


def message_with(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"text": "fallback", "blocks": list(blocks)}


def header(n: int) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": "h" * n}}


def section(n: int) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": "s" * n}}


def actions(*elements: dict[str, Any]) -> dict[str, Any]:
    return {"type": "actions", "elements": list(elements)}


def many_buttons(n: int) -> dict[str, Any]:
    return actions(*[{**button(), "action_id": f"a{i}"} for i in range(n)])


LIMITS = [
    ("header", message_with(header(150)), message_with(header(151))),
    ("section", message_with(section(3000)), message_with(section(3001))),
    ("button text", message_with(actions(button(text="b" * 75))), message_with(actions(button(text="b" * 76)))),
    (
        "button url",
        message_with(actions(button(url="https://x.test/" + "u" * 2985))),
        message_with(actions(button(url="https://x.test/" + "u" * 2986))),
    ),
    ("blocks", message_with(*[section(1)] * 50), message_with(*[section(1)] * 51)),
    ("buttons", message_with(many_buttons(25)), message_with(many_buttons(26))),
]


@pytest.mark.parametrize(("at_limit", "over_limit"), [(a, o) for _, a, o in LIMITS], ids=[n for n, _, _ in LIMITS])
def test_the_webhook_takes_a_block_at_its_limit_and_refuses_one_over_it(
    sink: VendorSink, at_limit: dict[str, Any], over_limit: dict[str, Any]
) -> None:
    url = f"{sink.url}/slack{HOOK}"
    accepted = httpx.post(url, content=orjson.dumps(at_limit), headers={"Content-Type": "application/json"})
    assert (accepted.status_code, accepted.text) == (200, "ok")
    refused = httpx.post(url, content=orjson.dumps(over_limit), headers={"Content-Type": "application/json"})
    assert (refused.status_code, refused.text) == (400, "invalid_blocks")


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/services/T0000TEST/B0000TEST/wrongsecret", message_with(section(1)), 404, "no_service"),
        (HOOK, {"blocks": []}, 400, "no_text"),
        (HOOK, None, 400, "invalid_payload"),
    ],
    ids=["unknown-hook", "no-text", "not-json"],
)
def test_the_webhook_refuses_what_slack_refuses(
    sink: VendorSink, path: str, body: dict[str, Any] | None, status: int, error: str
) -> None:
    content = b"{not json" if body is None else orjson.dumps(body)
    answer = httpx.post(f"{sink.url}/slack{path}", content=content, headers={"Content-Type": "application/json"})
    assert (answer.status_code, answer.text) == (status, error)
    assert sink.received() == []


@pytest.mark.parametrize(
    ("method", "token", "body", "error"),
    [
        ("chat.postMessage", None, {"channel": CHANNEL, "text": "x"}, "not_authed"),
        ("chat.postMessage", "xoxb-wrong", {"channel": CHANNEL, "text": "x"}, "invalid_auth"),
        ("chat.postMessage", TOKEN, {"channel": "C0000000000", "text": "x"}, "channel_not_found"),
        ("chat.postMessage", TOKEN, {"channel": CHANNEL, **message_with(header(151))}, "invalid_blocks"),
        ("chat.update", TOKEN, {"channel": CHANNEL, "ts": "1.000001", "text": "x"}, "message_not_found"),
    ],
    ids=["no-token", "wrong-token", "unknown-channel", "header-too-long", "unknown-ts"],
)
def test_the_web_api_refuses_what_slack_refuses(
    sink: VendorSink, method: str, token: str | None, body: dict[str, Any], error: str
) -> None:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    answer = httpx.post(f"{sink.url}/slack/api/{method}", content=orjson.dumps(body), headers=headers)
    assert answer.status_code == 200
    assert answer.json()["ok"] is False
    assert answer.json()["error"] == error
    assert sink.received() == []


def test_the_web_api_takes_what_the_channel_renders(sink: VendorSink) -> None:
    body = {"channel": CHANNEL, **payload(sample_message("x" * 50_000))}
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    answer = httpx.post(f"{sink.url}/slack/api/chat.postMessage", content=orjson.dumps(body), headers=headers)
    assert answer.json() == {"ok": True, "channel": CHANNEL, "ts": f"{int(FROZEN)}.000001"}
