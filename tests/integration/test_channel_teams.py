"""The Teams channel against its local imitation of a Workflows webhook: the channel contract, what the imitation
refuses (an unknown hook, a body over 28 KB, a body that is not an Adaptive Card message), and a 429's
Retry-After reaching the DeliveryError."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from deploy.local.kafka_local import free_port
from deploy.local.vendors.base import Answer, VendorSink
from deploy.local.vendors.teams import MAX_BYTES, TeamsVendor
from services.notifier.channels.base import ChannelContext, DeliveryError
from services.notifier.channels.teams import TeamsChannel, TeamsConfig, build, card, envelope, payload
from tests.support.channel_contract import ContractCase, check_contract, context, sample_message

pytestmark = pytest.mark.integration

HOOK = "/workflows/0123456789abcdef/triggers/manual/paths/invoke"
SIG = "sigsecret0123456789"
FROZEN = 1_700_000_000.0


def answer(status: int, retry_after: str | None = None) -> Answer:
    headers = (("Retry-After", retry_after),) if retry_after else ()
    return Answer(status, orjson.dumps({"error": {"code": "x", "message": "y"}}), "application/json", headers)


@pytest.fixture
def sink() -> Iterator[VendorSink]:
    """A sink whose clock stands still: the rate limit counts requests, never the time tests take."""
    running = VendorSink(free_port(), [TeamsVendor(hooks={HOOK})], clock=lambda: FROZEN).start()
    yield running
    running.stop()


def teams_channel(sink: VendorSink, ctx: ChannelContext) -> tuple[TeamsChannel, str]:
    url = f"{sink.url}/teams{HOOK}?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SIG}"
    return build([TeamsConfig(name="ops-teams", url=SecretStr(url))], ctx), "ops-teams"


CASE = ContractCase(
    kind="teams",
    vendor="teams",
    prefix="/teams",
    make=teams_channel,
    secrets=(SIG, HOOK),
    retryable=(answer(429, retry_after="5"), answer(500), answer(502), answer(503)),
    permanent=(answer(400), answer(401), answer(404), answer(413)),
    max_bytes=20_000,
    mentions=False,
)


async def test_teams_keeps_the_channel_contract(sink: VendorSink) -> None:
    await check_contract(CASE, sink)


async def test_the_card_shows_the_person_and_opens_the_action_links(sink: VendorSink) -> None:
    channel, target = teams_channel(sink, context())
    await channel.send(sample_message(), target)
    (seen,) = sink.received("teams")
    assert seen.title == "[P1] New ticket tl-1: disk full"
    assert seen.text == "Disk full on db-1.\nOwner: operations\nFor: Olga Ops"
    assert seen.actions == (
        ("Acknowledge", "http://127.0.0.1:8080/act/tok-ack"),
        ("Take it", "http://127.0.0.1:8080/act/tok-take"),
    )


async def test_over_the_rate_limit_the_retry_after_reaches_the_error(sink: VendorSink) -> None:
    channel, target = teams_channel(sink, context())
    for _ in range(4):  # Teams takes four a second (the imitation's clock stands still)
        await channel.send(sample_message(), target)
    with pytest.raises(DeliveryError) as caught:
        await channel.send(sample_message(), target)
    assert caught.value.retryable is True
    assert caught.value.retry_after_s == 1.0
    assert SIG not in str(caught.value)


async def test_a_programmed_retry_after_is_carried_as_given(sink: VendorSink) -> None:
    channel, target = teams_channel(sink, context())
    sink.answer_next("/teams", answer(429, retry_after="42"))
    with pytest.raises(DeliveryError) as caught:
        await channel.send(sample_message(), target)
    assert caught.value.retry_after_s == 42.0


# --- what the imitation refuses ----------------------------------------------------------------------------


def post(sink: VendorSink, body: bytes, path: str = HOOK) -> httpx.Response:
    return httpx.post(f"{sink.url}/teams{path}", content=body, headers={"Content-Type": "application/json"})


def test_a_body_at_the_size_limit_is_taken_and_one_byte_more_is_refused(sink: VendorSink) -> None:
    message = sample_message("")
    overhead = len(envelope(card(message, "")))
    at_limit = envelope(card(message, "x" * (MAX_BYTES - overhead)))
    assert len(at_limit) == MAX_BYTES
    assert post(sink, at_limit).status_code == 202
    over = envelope(card(message, "x" * (MAX_BYTES - overhead + 1)))
    assert post(sink, over).status_code == 413
    assert len(sink.received("teams")) == 1


def test_an_unknown_hook_is_not_found(sink: VendorSink) -> None:
    assert (
        post(sink, payload(sample_message()), path="/workflows/other/triggers/manual/paths/invoke").status_code == 404
    )
    assert sink.received() == []


def body_with(**changes: Any) -> bytes:
    value = orjson.loads(payload(sample_message()))
    attachment = value["attachments"][0]
    for key, new in changes.items():
        if key == "type":
            value["type"] = new
        elif key == "contentType":
            attachment["contentType"] = new
        else:
            attachment["content"][key] = new
    return orjson.dumps(value)


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        body_with(type="card"),
        body_with(contentType="application/vnd.microsoft.card.hero"),
        body_with(body={"type": "TextBlock"}),
        orjson.dumps({"type": "message", "attachments": []}),
        body_with(actions=[{"type": "Action.OpenUrl", "title": "x"}]),
    ],
    ids=["not-json", "not-a-message", "not-adaptive", "body-not-a-list", "no-attachment", "openurl-without-url"],
)
def test_a_body_that_is_not_an_adaptive_card_message_is_refused(sink: VendorSink, body: bytes) -> None:
    assert post(sink, body).status_code == 400
    assert sink.received() == []
