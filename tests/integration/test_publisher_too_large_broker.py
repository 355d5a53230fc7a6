"""intake's publisher on the real broker: a record no retry will ever fit is PublishTooLargeError (the sender's
413), not PublishUnavailableError (a 503 the sender retries for ever); an ordinary record after it is acknowledged."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from services.intake.publisher import KafkaPublisher, PublishTooLargeError, Record
from shared.streaming.topics import TopicSpec, ensure_topics

pytestmark = pytest.mark.integration


async def publish_both(bootstrap: str, topic: str) -> None:
    publisher = KafkaPublisher(bootstrap, timeout_s=10)
    await publisher.start()
    deadline = time.monotonic() + 60
    while not publisher.ready:  # connected: bounded by the deadline
        assert time.monotonic() < deadline, "the publisher never connected"
        await asyncio.sleep(0.05)
    try:
        for records in ([Record(topic, "k", b"x" * 1_100_000, [])], [Record(topic, "k", b"x" * 1_100_000, [])] * 2):
            with pytest.raises(PublishTooLargeError):
                await publisher.publish(records)
        await publisher.publish([Record(topic, "k", b"fits", [])])
    finally:
        await publisher.stop()


def test_a_record_over_the_brokers_limit_is_too_large_not_unavailable(kafka_bootstrap: str) -> None:
    topic = f"toolarge{uuid.uuid4().hex}"
    asyncio.run(ensure_topics(kafka_bootstrap, [TopicSpec(topic, 2, "events", "a test topic")]))
    asyncio.run(publish_both(kafka_bootstrap, topic))
