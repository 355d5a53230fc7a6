"""The WeCom channel against the local WeCom group robot (deploy/local/vendors/wecom.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
from pydantic import SecretStr

from deploy.local.kafka_local import free_port
from deploy.local.vendors.base import Answer, VendorSink
from deploy.local.vendors.wecom import WeComVendor
from services.notifier.channels import wecom
from services.notifier.channels.base import Channel, ChannelContext, DeliveryError, Http, Message
from tests.support.channel_contract import ContractCase, check_contract, sample_message

pytestmark = pytest.mark.integration

KEY = "693a91f6-7aaa-4bc4-97a0-0ec2sifa5aaa"
NOW = time.time()


def errcode(code: int) -> Answer:
    return Answer(200, orjson.dumps({"errcode": code, "errmsg": "x"}))


@pytest.fixture
def sink() -> Iterator[VendorSink]:
    started = VendorSink(free_port(), [WeComVendor([KEY])], clock=lambda: NOW).start()
    yield started
    started.stop()


def hook_url(sink: VendorSink, key: str) -> str:
    return f"{sink.url}/wecom/cgi-bin/webhook/send?key={key}"


def make_with(key: str) -> ContractCase:
    def make(sink: VendorSink, context: ChannelContext) -> tuple[Channel, str]:
        entry = wecom.WeComConfig(name="ops-wecom", url=SecretStr(hook_url(sink, key)))
        return wecom.build([entry], context), "ops-wecom"

    return ContractCase(
        kind="wecom",
        vendor="wecom",
        prefix="/wecom",
        make=make,
        secrets=(key,),
        retryable=(errcode(45009), errcode(-1), Answer(502, b"", "text/plain"), Answer(429, b"", "text/plain")),
        permanent=(errcode(93000), errcode(40058), errcode(40008), Answer(404, b"", "text/plain")),
        max_bytes=wecom.MARKDOWN_MAX_BYTES,
    )


def channel(sink: VendorSink, key: str = KEY) -> Channel:
    made, _ = make_with(key).make(sink, ChannelContext(Http(5.0), time.time))
    return made


def without_mention(message: Message) -> Message:
    return Message(message.kind, message.subject, message.text, message.data, message.actions, None)


async def test_keeps_the_contract(sink: VendorSink) -> None:
    await check_contract(make_with(KEY), sink)


async def test_a_mention_by_mobile_arrives_as_text_with_the_mobile_mentioned(sink: VendorSink) -> None:
    await channel(sink).send(sample_message(), "ops-wecom")
    (seen,) = sink.received("wecom")
    assert seen.body["msgtype"] == "text"
    assert seen.mentions == ("13800000000",)


async def test_without_a_mention_markdown_with_links_arrives(sink: VendorSink) -> None:
    await channel(sink).send(without_mention(sample_message()), "ops-wecom")
    (seen,) = sink.received("wecom")
    assert seen.body["msgtype"] == "markdown"
    assert seen.title == "[P1] New ticket tl-1: disk full"
    assert [label for label, _ in seen.actions] == ["Acknowledge", "Take it"]


async def test_long_chinese_markdown_is_cut_within_4096_bytes_and_accepted(sink: VendorSink) -> None:
    await channel(sink).send(without_mention(sample_message("告警详情：磁盘已满。\n" * 1000)), "ops-wecom")
    (seen,) = sink.received("wecom")
    assert len(seen.body["markdown"]["content"].encode()) <= 4096


async def test_wrong_key_is_refused_with_93000_and_not_retried(sink: VendorSink) -> None:
    wrong = "00000000-dead-beef-0000-000000000000"
    with pytest.raises(DeliveryError) as caught:
        await channel(sink, wrong).send(sample_message(), "ops-wecom")
    assert not caught.value.retryable and "93000" in str(caught.value)
    for shown in (str(caught.value), repr(caught.value)):
        assert wrong not in shown and KEY not in shown
    assert sink.received("wecom") == []


async def test_the_21st_message_in_a_minute_gets_45009_and_is_retryable(sink: VendorSink) -> None:
    sender = channel(sink)
    for _ in range(20):
        await sender.send(sample_message(), "ops-wecom")
    with pytest.raises(DeliveryError) as caught:
        await sender.send(sample_message(), "ops-wecom")
    assert caught.value.retryable and "45009" in str(caught.value)
    assert len(sink.received("wecom")) == 20


@pytest.mark.parametrize(("msgtype", "limit"), [("text", 2048), ("markdown", 4096)])
async def test_imitation_refuses_content_over_the_limit_as_wecom_does(
    sink: VendorSink, msgtype: str, limit: int
) -> None:
    async with httpx.AsyncClient() as http:
        exact = await http.post(hook_url(sink, KEY), json={"msgtype": msgtype, msgtype: {"content": "a" * limit}})
        over = await http.post(
            hook_url(sink, KEY), json={"msgtype": msgtype, msgtype: {"content": "字" * (limit // 3 + 1)}}
        )
    assert exact.json()["errcode"] == 0
    assert over.status_code == 200
    assert over.json()["errcode"] == 40058
    assert f"exceed max length {limit}" in over.json()["errmsg"]
