"""shared/tables.py on the real broker: a table recovered by a plain consumer holds exactly what its changelog
committed (tombstones applied, aborted transactions skipped), and tells faust's recovery it has it all."""

from __future__ import annotations

import asyncio
import time

import faust
import pytest
from aiokafka import AIOKafkaProducer
from faust.types import TP

from shared.app import kafka_url
from shared.tables import ChangelogStore, ChangelogTable
from shared.topics import TopicSpec, ensure_topics
from tests.support.kafka_io import produce

pytestmark = pytest.mark.integration


async def _aborted(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"tx-{time.time_ns()}")
    await producer.start()
    try:
        await producer.begin_transaction()
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key, partition=0)
        await producer.abort_transaction()
    finally:
        await producer.stop()


async def _committed(bootstrap: str, topic: str, records: list[tuple[bytes, bytes | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"tx-{time.time_ns()}")
    await producer.start()
    try:
        async with producer.transaction():
            for key, value in records:
                await producer.send_and_wait(topic, value, key=key, partition=0)
    finally:
        await producer.stop()


def test_a_table_loads_what_its_changelog_committed_and_faust_reads_nothing_more(kafka_bootstrap: str) -> None:
    app = faust.App(f"it-tables-{time.time_ns()}", broker=kafka_url(kafka_bootstrap))
    table = ChangelogTable(app, name="clocks", key_type=bytes, value_type=bytes, partitions=1)
    changelog = f"{app.conf.id}-clocks-changelog"
    asyncio.run(ensure_topics(kafka_bootstrap, [TopicSpec(changelog, 1, "n", "a changelog")]))
    asyncio.run(produce(kafka_bootstrap, changelog, [("a", b"a1"), ("b", b"b1"), ("gone", b"g1")]))
    asyncio.run(_committed(kafka_bootstrap, changelog, [(b"a", b"a2"), (b"gone", None), (b"c", b"c1")]))
    asyncio.run(_aborted(kafka_bootstrap, changelog, [(b"a", b"never"), (b"d", b"never")]))
    store = table.data
    assert isinstance(store, ChangelogStore)
    store._key_partition[b"left-from-before"] = 0  # an earlier hold of this partition: dropped on loading
    store.data[b"left-from-before"] = b"stale"

    tp = TP(changelog, 0)
    asyncio.run(store.load([tp]))

    assert dict(store.data) == {b"a": b"a2", b"b": b"b1", b"c": b"c1"}
    assert store._key_partition == {b"a": 0, b"b": 0, b"c": 0}
    # 3 records, 3 in a transaction and its marker, 2 aborted and their marker: faust's recovery is told the
    # last offset is applied, so it finds nothing left to read
    assert store.persisted_offset(tp) == 9
