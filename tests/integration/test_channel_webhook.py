"""The generic signed webhook against a local receiver that verifies its signature as a receiver should
(deploy/local/vendors/webhook.py): the same contract as every chat vendor's channel."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import orjson
import pytest
from pydantic import SecretStr

from deploy.local.kafka_local import free_port
from deploy.local.vendors.base import Answer, VendorSink
from deploy.local.vendors.webhook import TicketloopWebhookVendor
from services.notifier.channels import webhook
from services.notifier.channels.base import Channel, ChannelContext, DeliveryError
from tests.support.channel_contract import ContractCase, check_contract, context, sample_message

pytestmark = pytest.mark.integration

SECRET = "hook-signing-secret-0123456789"
HOOK = "ops-7f3a9c"  # the receiver's path: a secret part of the URL


@pytest.fixture
def sink() -> Iterator[VendorSink]:
    started = VendorSink(free_port(), [TicketloopWebhookVendor({HOOK: SECRET})]).start()
    yield started
    started.stop()


def make_with(secret: str) -> ContractCase:
    def make(sink: VendorSink, ctx: ChannelContext) -> tuple[Channel, str]:
        entry = webhook.WebhookConfig(
            name="ops-hook", url=SecretStr(f"{sink.url}/hooks/{HOOK}"), secret=SecretStr(secret)
        )
        return webhook.build([entry], ctx), "ops-hook"

    return ContractCase(
        kind="webhook",
        vendor="webhook",
        prefix="/hooks",
        make=make,
        secrets=(HOOK, SECRET),
        retryable=tuple(Answer(status, b"", "text/plain") for status in (429, 500, 502, 503)),
        permanent=tuple(Answer(status, b"", "text/plain") for status in (400, 401, 404, 413)),
        max_bytes=webhook.MAX_BYTES,
        mentions=False,
    )


async def test_keeps_the_contract(sink: VendorSink) -> None:
    await check_contract(make_with(SECRET), sink)


async def test_the_body_is_the_message_with_its_ticket_and_action_links(sink: VendorSink) -> None:
    channel, target = make_with(SECRET).make(sink, context())
    await channel.send(sample_message(), target)
    (seen,) = sink.received("webhook")
    assert seen.body["ticket_id"] == "tl-1" and seen.body["kind"] == "assignment"
    assert [a["action"] for a in seen.body["actions"]] == ["ack", "take"]


async def test_the_notification_id_is_also_the_idempotency_key(sink: VendorSink) -> None:
    channel, target = make_with(SECRET).make(sink, context())
    sent = sample_message()
    await channel.send(replace(sent, data={**sent.data, "notification_id": "n-42"}), target)
    (seen,) = sink.received("webhook")
    assert seen.body["notification_id"] == "n-42"  # the receiver refuses a body whose header says otherwise


def test_a_message_without_an_id_has_no_idempotency_key() -> None:
    headers = webhook.headers_for(SECRET, 1_700_000_000, b"{}", sample_message())
    assert webhook.IDEMPOTENCY_HEADER not in headers and headers[webhook.TIMESTAMP_HEADER] == "1700000000"
    with_id = replace(sample_message(), data={"notification_id": "n-1"})
    assert webhook.headers_for(SECRET, 1_700_000_000, b"{}", with_id)[webhook.IDEMPOTENCY_HEADER] == "n-1"


async def test_a_wrong_secret_is_refused_by_the_receiver_and_not_retried(sink: VendorSink) -> None:
    channel, target = make_with("not-the-receivers-secret").make(sink, context())
    with pytest.raises(DeliveryError) as caught:
        await channel.send(sample_message(), target)
    assert not caught.value.retryable and "401" in str(caught.value)
    assert HOOK not in str(caught.value) and SECRET not in str(caught.value)
    assert sink.received("webhook") == []


def test_the_signature_covers_timestamp_and_body() -> None:
    body = orjson.dumps({"a": 1})
    assert webhook.sign(SECRET, 1_700_000_000, body) != webhook.sign(SECRET, 1_700_000_001, body)
    assert webhook.sign(SECRET, 1_700_000_000, body).startswith("v1=")
