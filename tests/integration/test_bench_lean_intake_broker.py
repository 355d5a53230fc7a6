"""bench/lean_intake, the bound under intake's single-post rate, on the real broker: each post it answers 202 is a
record on its topic, and what is not HTTP gets a 400 and a closed connection."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.http_load import Posting, post_all, read_answer
from deploy.local.kafka_local import free_port
from shared.streaming.topics import TopicSpec, ensure_topics

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 4
MARK = b"mark"


async def read_values(bootstrap: str, topic: str, expect: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    values: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while len(values) < expect and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            values.extend(r.value for records in batch.values() for r in records if r.value is not None)
    finally:
        await consumer.stop()
    return values


async def mark_each_partition(bootstrap: str, topic: str) -> None:
    """A mark written to each partition after the posts, so reading up to the marks sees all they wrote."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition in range(PARTITIONS):
            await producer.send_and_wait(topic, MARK, partition=partition)
    finally:
        await producer.stop()


async def malformed_answer(port: int) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    status, _keep = await read_answer(reader)
    rest = await asyncio.wait_for(reader.read(), 10)  # the server closes: read() ends
    writer.close()
    return status, rest


def lean_server(bootstrap: str, topic: str, *flags: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    args = ["-m", "bench.lean_intake", "--port", str(port), "--bootstrap", bootstrap, "--topic", topic, *flags]
    proc = subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return proc, f"http://127.0.0.1:{port}/api/v1/integrations/x"


def post_each(url: str, bodies: list[bytes]) -> Posting:
    posting = Posting()
    asyncio.run(post_all(url, bodies, {"Content-Type": "application/json"}, 8, time.monotonic() + 60, posting))
    return posting


def test_every_post_answered_202_is_on_its_topic_and_garbage_is_a_400(kafka_bootstrap: str) -> None:
    topic = f"lean{uuid.uuid4().hex}"
    asyncio.run(ensure_topics(kafka_bootstrap, [TopicSpec(topic, PARTITIONS, "posts", "the lean server's test topic")]))
    bodies = [f'{{"n": {i}}}'.encode() for i in range(200)]
    proc, url = lean_server(kafka_bootstrap, topic)
    try:
        posting = post_each(url, bodies)
        assert (posting.posted, posting.failed, posting.retries) == (200, 0, 0)
        assert sorted(asyncio.run(read_values(kafka_bootstrap, topic, 200))) == sorted(bodies)
        assert asyncio.run(malformed_answer(int(url.split(":")[2].split("/")[0]))) == (400, b"")
    finally:
        proc.terminate()
        proc.wait(30)
    proc, url = lean_server(kafka_bootstrap, topic, "--at-once")  # answers all, produces nothing
    try:
        posting = post_each(url, bodies[:50])
        assert (posting.posted, posting.failed) == (50, 0)
        asyncio.run(mark_each_partition(kafka_bootstrap, topic))
        values = asyncio.run(read_values(kafka_bootstrap, topic, 204))
        assert values.count(MARK) == 4 and sorted(v for v in values if v != MARK) == sorted(bodies)
    finally:
        proc.terminate()
        proc.wait(30)
