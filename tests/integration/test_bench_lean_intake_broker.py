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
from aiokafka import AIOKafkaConsumer

from bench.http_load import Posting, post_all, read_answer
from deploy.local.kafka_local import free_port
from shared.streaming.topics import TopicSpec, ensure_topics

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


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


async def malformed_answer(port: int) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    status, _keep = await read_answer(reader)
    rest = await asyncio.wait_for(reader.read(), 10)  # the server closes: read() ends
    writer.close()
    return status, rest


def test_every_post_answered_202_is_on_its_topic_and_garbage_is_a_400(kafka_bootstrap: str) -> None:
    topic = f"lean{uuid.uuid4().hex}"
    asyncio.run(ensure_topics(kafka_bootstrap, [TopicSpec(topic, 4, "posts", "the lean server's test topic")]))
    port = free_port()
    args = ["-m", "bench.lean_intake", "--port", str(port), "--bootstrap", kafka_bootstrap, "--topic", topic]
    proc = subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        bodies = [f'{{"n": {i}}}'.encode() for i in range(200)]
        posting = Posting()
        url = f"http://127.0.0.1:{port}/api/v1/integrations/x"
        asyncio.run(post_all(url, bodies, {"Content-Type": "application/json"}, 8, time.monotonic() + 60, posting))
        assert (posting.posted, posting.failed, posting.retries) == (200, 0, 0)
        assert sorted(asyncio.run(read_values(kafka_bootstrap, topic, 200))) == sorted(bodies)
        assert asyncio.run(malformed_answer(port)) == (400, b"")
    finally:
        proc.terminate()
        proc.wait(30)
