"""The DingTalk channel against the local DingTalk robot (deploy/local/vendors/dingtalk.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest
from pydantic import SecretStr

from deploy.local.kafka_local import free_port
from deploy.local.vendors.base import Answer, VendorSink
from deploy.local.vendors.dingtalk import DingTalkVendor
from services.notifier.channels import dingtalk
from services.notifier.channels.base import Channel, ChannelContext, DeliveryError, Http, Message
from tests.support.channel_contract import ContractCase, check_contract, sample_message

pytestmark = pytest.mark.integration

SIGNED_TOKEN = "dt0signed0token0abcdef0123456789"
PLAIN_TOKEN = "dt0plain0token0abcdef0123456789"
SECRET = "SECdingtalk0secret0abcdef0123456789"
NOW = time.time()


def errcode(code: int) -> Answer:
    return Answer(200, orjson.dumps({"errcode": code, "errmsg": "x"}))


@pytest.fixture
def sink() -> Iterator[VendorSink]:
    vendor = DingTalkVendor({SIGNED_TOKEN: SECRET, PLAIN_TOKEN: None})
    started = VendorSink(free_port(), [vendor], clock=lambda: NOW).start()
    yield started
    started.stop()


def robot_url(sink: VendorSink, token: str) -> str:
    return f"{sink.url}/dingtalk/robot/send?access_token={token}"


def maker(token: str, secret: str | None) -> Callable[[VendorSink, ChannelContext], tuple[Channel, str]]:
    def make(sink: VendorSink, context: ChannelContext) -> tuple[Channel, str]:
        entry = dingtalk.DingTalkConfig(
            name="ops-ding",
            url=SecretStr(robot_url(sink, token)),
            secret=SecretStr(secret) if secret is not None else None,
        )
        return dingtalk.build([entry], context), "ops-ding"

    return make


def case(token: str, secret: str | None) -> ContractCase:
    return ContractCase(
        kind="dingtalk",
        vendor="dingtalk",
        prefix="/dingtalk",
        make=maker(token, secret),
        secrets=(token, SECRET),
        retryable=(errcode(130101), errcode(-1), Answer(503, b"busy", "text/plain"), Answer(429, b"", "text/plain")),
        permanent=(errcode(310000), errcode(300001), errcode(400105), Answer(400, b"", "text/plain")),
        max_bytes=dingtalk.MAX_BODY_BYTES,
    )


def channel(sink: VendorSink, secret: str | None, clock: Callable[[], float] = time.time) -> Channel:
    made, _ = maker(SIGNED_TOKEN, secret)(sink, ChannelContext(Http(5.0), clock))
    return made


async def test_signed_robot_keeps_the_contract(sink: VendorSink) -> None:
    await check_contract(case(SIGNED_TOKEN, SECRET), sink)


async def test_unsigned_robot_keeps_the_contract(sink: VendorSink) -> None:
    await check_contract(case(PLAIN_TOKEN, None), sink)


async def test_actions_without_a_mention_arrive_as_buttons(sink: VendorSink) -> None:
    plain = sample_message()
    message = Message(plain.kind, plain.subject, plain.text, plain.data, plain.actions, None)
    await channel(sink, SECRET).send(message, "ops-ding")
    (seen,) = sink.received("dingtalk")
    assert seen.body["msgtype"] == "actionCard"
    assert [label for label, _ in seen.actions] == ["Acknowledge", "Take it"]
    assert seen.mentions == ()


async def test_wrong_secret_is_refused_with_310000_and_not_retried(sink: VendorSink) -> None:
    wrong = "SECwrong0secret0000000000000000000"
    with pytest.raises(DeliveryError) as caught:
        await channel(sink, wrong).send(sample_message(), "ops-ding")
    assert not caught.value.retryable
    assert "310000" in str(caught.value)
    for shown in (str(caught.value), repr(caught.value)):
        for secret in (wrong, SECRET, SIGNED_TOKEN):
            assert secret not in shown
    assert sink.received("dingtalk") == []
    assert any("sign not match" in why for _, _, why in sink.rejections)


async def test_missing_signature_on_a_signed_robot_is_refused(sink: VendorSink) -> None:
    with pytest.raises(DeliveryError) as caught:
        await channel(sink, None).send(sample_message(), "ops-ding")
    assert not caught.value.retryable and "310000" in str(caught.value)


async def test_stale_timestamp_is_refused(sink: VendorSink) -> None:
    two_hours_ago = lambda: NOW - 7200  # noqa: E731
    with pytest.raises(DeliveryError) as caught:
        await channel(sink, SECRET, two_hours_ago).send(sample_message(), "ops-ding")
    assert not caught.value.retryable and "310000" in str(caught.value)
    assert any("invalid timestamp" in why for _, _, why in sink.rejections)


async def test_the_21st_message_in_a_minute_is_throttled_and_retryable(sink: VendorSink) -> None:
    sender = channel(sink, SECRET)
    for _ in range(20):
        await sender.send(sample_message(), "ops-ding")
    with pytest.raises(DeliveryError) as caught:
        await sender.send(sample_message(), "ops-ding")
    assert caught.value.retryable
    assert caught.value.retry_after_s == 600
    assert "130101" in str(caught.value)
    assert len(sink.received("dingtalk")) == 20


async def test_imitation_refuses_an_oversized_body_as_dingtalk_does(sink: VendorSink) -> None:
    body = orjson.dumps({"msgtype": "markdown", "markdown": {"title": "t", "text": "字" * 7000}})
    async with httpx.AsyncClient() as http:
        answer = await http.post(robot_url(sink, PLAIN_TOKEN), content=body)
    assert answer.status_code == 200
    assert answer.json()["errcode"] == 460101
