"""Exactly-once on the real broker (shared/streaming/eos.py): a transaction never commits half an event, and a restarted
worker knows its changelogs' extent before it recovers from them.

faust commits every 0.2 s whatever its agents are doing. The probe app (tests/support/eos_probe.py) publishes a
first output and then is held mid-event by the test for many commit intervals: the first output must stay
uncommitted (invisible to read-committed readers, as the sla and notifier read) until the event is done, and
then both outputs commit together with the input's offset. A commit taken mid-event would let a crash publish
the first output twice (committed without the offset that says the event was handled)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.streaming.eos import StableHighwaterThread
from shared.streaming.topics import TopicSpec, ensure_topics
from tests.support.kafka_io import produce, read_all
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
HELD_S = 3.0  # fifteen of faust's 0.2 s commit intervals


async def _committed_offset(bootstrap: str, group: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


@pytest.fixture
def probe(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[str, str, str, Path]]:
    prefix = f"it-eos-{time.time_ns()}."
    source, out = f"{prefix}in", f"{prefix}out"
    asyncio.run(ensure_topics(kafka_bootstrap, [TopicSpec(t, 1, "n", "eos probe") for t in (source, out)]))
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TICKETLOOP_TOPIC_PREFIX": prefix,
        "TICKETLOOP_PARTITIONS": "1",
        "TICKETLOOP_PROCESSING_GUARANTEE": "exactly_once",
    }
    log = (tmp_path / "probe.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.eos_probe", source, out, str(tmp_path)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield source, out, f"{prefix}eos-probe", tmp_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_a_transaction_never_commits_half_an_event(kafka_bootstrap: str, probe: tuple[str, str, str, Path]) -> None:
    """Event 0 goes straight through (released beforehand); event 1 is held. faust's next commit has event 0's
    offset to commit while event 1 is mid-way: it must not take event 1's first output with it."""
    source, out, group, workdir = probe
    (workdir / "release-0").touch()
    asyncio.run(produce(kafka_bootstrap, source, [("k", b"0"), ("k", b"1")]))
    wait_for("the probe to publish event 1's first output and hold", (workdir / "sent-1").exists)

    written = asyncio.run(read_all(kafka_bootstrap, out, expect=3, within_s=30))
    assert [r.value for r in written] == [b"first:0", b"second:0", b"first:1"], "all on the topic, some uncommitted"
    seen = [
        r.value for r in asyncio.run(read_all(kafka_bootstrap, out, expect=3, within_s=HELD_S, committed_only=True))
    ]
    assert b"first:1" not in seen, f"a commit taken mid-event made {seen} visible without event 1's input offset"

    (workdir / "release-1").touch()
    seen = [r.value for r in asyncio.run(read_all(kafka_bootstrap, out, expect=4, within_s=60, committed_only=True))]
    assert seen == [b"first:0", b"second:0", b"first:1", b"second:1"]
    committed = wait_for(
        "both input offsets to be committed",
        lambda: asyncio.run(_committed_offset(kafka_bootstrap, group, source)) == 2,
    )
    assert committed


def test_a_changelogs_highwater_is_known_before_the_first_fetch_of_it(kafka_bootstrap: str) -> None:
    """A restarted worker's table recovery asks for each changelog's highwater before it has fetched from it.
    faust (exactly_once) answers from the last fetch response: nothing, which it takes for an empty changelog,
    and a restarted router then recovered empty tables and split every group into a second ticket. Our consumer
    thread asks the broker: the last stable offset, at once."""
    topic = f"it-eos-hw-{time.time_ns()}.changelog"
    asyncio.run(ensure_topics(kafka_bootstrap, [TopicSpec(topic, 1, "c", "highwater probe")]))

    async def scenario() -> tuple[int | None, Mapping[Any, int]]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic}-writer")
        await producer.start()
        try:
            async with producer.transaction():
                for n in range(5):
                    await producer.send_and_wait(topic, b"v%d" % n, key=b"k")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, isolation_level="read_committed")
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            thread = StableHighwaterThread.__new__(StableHighwaterThread)  # only its broker question is tested
            thread._consumer = consumer
            return consumer.last_stable_offset(tp), await thread._highwaters([tp])
        finally:
            await consumer.stop()

    faust_answer, ours = asyncio.run(scenario())
    assert faust_answer is None  # what faust's exactly_once path reads before the first fetch
    assert list(ours.values()) == [6]  # five records and the commit marker
