"""The Feishu channel against the local Feishu custom bot (deploy/local/vendors/feishu.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest
from pydantic import SecretStr

from deploy.local.kafka_local import free_port
from deploy.local.vendors.base import Answer, VendorSink
from deploy.local.vendors.feishu import FeishuVendor
from services.notifier.channels import feishu
from services.notifier.channels.base import Channel, ChannelContext, DeliveryError, Http
from tests.support.channel_contract import ContractCase, check_contract, sample_message

pytestmark = pytest.mark.integration

SIGNED_TOKEN = "f19a0signed0token0000000000000000"
PLAIN_TOKEN = "f19a0plain0token00000000000000000"
SECRET = "larkSigningSecret0123456789"
NOW = time.time()


def code(value: int) -> Answer:
    return Answer(200, orjson.dumps({"code": value, "data": {}, "msg": "x"}))


@pytest.fixture
def sink() -> Iterator[VendorSink]:
    vendor = FeishuVendor({SIGNED_TOKEN: SECRET, PLAIN_TOKEN: None})
    started = VendorSink(free_port(), [vendor], clock=lambda: NOW).start()
    yield started
    started.stop()


def maker(token: str, secret: str | None) -> Callable[[VendorSink, ChannelContext], tuple[Channel, str]]:
    def make(sink: VendorSink, context: ChannelContext) -> tuple[Channel, str]:
        entry = feishu.FeishuConfig(
            name="ops-lark",
            url=SecretStr(f"{sink.url}/feishu/open-apis/bot/v2/hook/{token}"),
            secret=SecretStr(secret) if secret is not None else None,
        )
        return feishu.build([entry], context), "ops-lark"

    return make


def case(token: str, secret: str | None) -> ContractCase:
    return ContractCase(
        kind="feishu",
        vendor="feishu",
        prefix="/feishu",
        make=maker(token, secret),
        secrets=(token, SECRET),
        retryable=(code(11232), Answer(500, b"", "text/plain"), Answer(429, b"", "text/plain")),
        permanent=(code(19021), code(19024), code(9499), code(19001), Answer(400, b"", "text/plain")),
        max_bytes=feishu.MAX_BODY_BYTES,
        mentions=False,  # a custom bot mentions only by open_id/user_id: the person is named in the text
    )


def channel(sink: VendorSink, secret: str | None, clock: Callable[[], float] = time.time) -> Channel:
    made, _ = maker(SIGNED_TOKEN, secret)(sink, ChannelContext(Http(5.0), clock))
    return made


async def test_signed_bot_keeps_the_contract(sink: VendorSink) -> None:
    await check_contract(case(SIGNED_TOKEN, SECRET), sink)


async def test_unsigned_bot_keeps_the_contract(sink: VendorSink) -> None:
    await check_contract(case(PLAIN_TOKEN, None), sink)


async def test_the_card_shows_title_buttons_and_names_the_person(sink: VendorSink) -> None:
    await channel(sink, SECRET).send(sample_message(), "ops-lark")
    (seen,) = sink.received("feishu")
    assert seen.title == "[P1] New ticket tl-1: disk full"
    assert "For: Olga Ops" in seen.text
    assert seen.actions[0] == ("Acknowledge", "http://127.0.0.1:8080/act/tok-ack")


async def test_wrong_secret_is_refused_with_19021_and_not_retried(sink: VendorSink) -> None:
    wrong = "larkWrongSecret000000000000"
    with pytest.raises(DeliveryError) as caught:
        await channel(sink, wrong).send(sample_message(), "ops-lark")
    assert not caught.value.retryable and "19021" in str(caught.value)
    for shown in (str(caught.value), repr(caught.value)):
        for secret in (wrong, SECRET, SIGNED_TOKEN):
            assert secret not in shown
    assert sink.received("feishu") == []


async def test_stale_timestamp_is_refused_with_19021(sink: VendorSink) -> None:
    with pytest.raises(DeliveryError) as caught:
        await channel(sink, SECRET, lambda: NOW - 3700).send(sample_message(), "ops-lark")
    assert not caught.value.retryable and "19021" in str(caught.value)


async def test_unknown_token_is_refused_with_19001(sink: VendorSink) -> None:
    made, target = maker("f19a0unknown000000000000000000000", None)(sink, ChannelContext(Http(5.0), time.time))
    with pytest.raises(DeliveryError) as caught:
        await made.send(sample_message(), target)
    assert not caught.value.retryable and "19001" in str(caught.value)


async def test_the_sixth_message_in_a_second_gets_11232_and_is_retryable(sink: VendorSink) -> None:
    sender = channel(sink, SECRET)  # the sink's clock stands still: every send is in the same second
    for _ in range(5):
        await sender.send(sample_message(), "ops-lark")
    with pytest.raises(DeliveryError) as caught:
        await sender.send(sample_message(), "ops-lark")
    assert caught.value.retryable and "11232" in str(caught.value)
    assert len(sink.received("feishu")) == 5


async def test_imitation_refuses_a_body_over_20_kb_and_a_broken_card(sink: VendorSink) -> None:
    url = f"{sink.url}/feishu/open-apis/bot/v2/hook/{PLAIN_TOKEN}"
    big = {"msg_type": "text", "content": {"text": "字" * 7000}}
    broken = {"msg_type": "interactive", "card": {"elements": [{"tag": "action", "actions": [{"tag": "link"}]}]}}
    async with httpx.AsyncClient() as http:
        answers = [(await http.post(url, json=body)).json() for body in (big, broken)]
    assert [a["code"] for a in answers] == [9499, 9499]
