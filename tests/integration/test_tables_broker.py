"""shared/streaming/tables.py on the real broker: a table recovered by a plain consumer holds exactly what its changelog
committed (tombstones applied, aborted transactions skipped), and tells faust's recovery it has it all."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import faust
import pytest
from aiokafka import AIOKafkaProducer
from faust.types import TP

from shared.streaming.app import kafka_url
from shared.streaming.snapshots import SnapshotDir, SnapshotPolicy
from shared.streaming.tables import ChangelogStore, ChangelogTable, topics_known, wait_known
from shared.streaming.topics import TopicSpec, ensure_topics
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


def _snapshotting_store(app_id: str, bootstrap: str, directory: Path) -> ChangelogStore:
    app = faust.App(app_id, broker=kafka_url(bootstrap))
    table = ChangelogTable(app, name="clocks", key_type=bytes, value_type=bytes, partitions=1)
    store = table.data
    assert isinstance(store, ChangelogStore)
    snapshots = SnapshotDir(directory)
    snapshots.lock()
    store.use_snapshots(SnapshotPolicy(directory, interval_s=0), snapshots, None)
    return store


def _changelog(bootstrap: str) -> tuple[str, TP]:
    app_id = f"it-snap-{time.time_ns()}"
    changelog = f"{app_id}-clocks-changelog"
    asyncio.run(ensure_topics(bootstrap, [TopicSpec(changelog, 1, "n", "a changelog")]))
    return app_id, TP(changelog, 0)


def test_a_restart_loads_its_snapshot_then_reads_only_the_changelog_after_it(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A snapshot holds what memory held when the commit listed its keys, whatever changes while it is written (the
    journal); the next load takes it, then reads only the records after its offset (tombstones applied, aborted
    transactions skipped) and ends with exactly what the whole changelog holds."""
    app_id, tp = _changelog(kafka_bootstrap)
    asyncio.run(produce(kafka_bootstrap, tp.topic, [("a", b"a1"), ("b", b"b1"), ("c", b"c1")]))
    first = _snapshotting_store(app_id, kafka_bootstrap, tmp_path / "state")

    async def hold_and_snapshot() -> None:
        assert await first.load([tp]) == 3
        first.after_commit(set(), settled=True)
        writing = first._writing
        assert writing is not None, "a snapshot was due and memory held committed state only"
        # changed while the snapshot is written: not in it (these changes never reached the changelog)
        first[b"a"] = b"a-uncommitted"
        del first[b"b"]
        first[b"new"] = b"uncommitted"
        await writing

    asyncio.run(hold_and_snapshot())
    assert first._snapshots is not None
    first._snapshots.release()

    asyncio.run(_committed(kafka_bootstrap, tp.topic, [(b"a", b"a2"), (b"c", None), (b"d", b"d1")]))
    asyncio.run(_aborted(kafka_bootstrap, tp.topic, [(b"b", b"never")]))
    second = _snapshotting_store(app_id, kafka_bootstrap, tmp_path / "state")
    read = asyncio.run(second.load([tp]))

    assert dict(second.data) == {b"a": b"a2", b"b": b"b1", b"d": b"d1"}
    assert read == 3, "only the committed records after the snapshot's offset were read"
    assert second.persisted_offset(tp) == 8  # 3 records, 3 in a transaction and its marker, 1 aborted and its


@pytest.mark.parametrize("fault", ["damaged", "ahead of the changelog"])
def test_an_unusable_snapshot_is_passed_over_for_the_whole_changelog(
    kafka_bootstrap: str, tmp_path: Path, fault: str
) -> None:
    app_id, tp = _changelog(kafka_bootstrap)
    asyncio.run(produce(kafka_bootstrap, tp.topic, [("a", b"a1"), ("b", b"b1")]))
    directory = tmp_path / "state"
    directory.mkdir()
    writer = SnapshotDir(directory).writer(tp.topic, 0, 2 if fault == "damaged" else 1000)
    writer.write([b"a", b"from-snapshot", b"z", b"from-snapshot"])
    writer.finish()
    writer.commit()
    if fault == "damaged":
        raw = bytearray(writer.path.read_bytes())
        raw[-25] ^= 0xFF
        writer.path.write_bytes(bytes(raw))
    store = _snapshotting_store(app_id, kafka_bootstrap, directory)

    read = asyncio.run(store.load([tp]))

    assert dict(store.data) == {b"a": b"a1", b"b": b"b1"}
    assert read == 2


def test_faust_s_wait_at_start_is_kept_only_while_a_changelog_topic_is_new(kafka_bootstrap: str) -> None:
    """The table manager skips faust's one-second wait only when the broker knows every changelog topic (a restart);
    on a first start the topic is new and the wait covers its metadata reaching the consumer."""
    changelog = f"it-known-{time.time_ns()}-clocks-changelog"
    assert not asyncio.run(topics_known(kafka_bootstrap, [changelog, "ticketloop.never-made"]))
    asyncio.run(ensure_topics(kafka_bootstrap, [TopicSpec(changelog, 2, "n", "a changelog")]))
    assert asyncio.run(topics_known(kafka_bootstrap, [changelog]))
    assert not asyncio.run(topics_known(kafka_bootstrap, [changelog, "ticketloop.never-made"]))


def test_a_first_start_waits_until_the_broker_lists_the_new_changelog_topics(kafka_bootstrap: str) -> None:
    """On a first start the changelog topics are created and waited for (not a fixed second): the wait ends once
    the broker lists them, and says so when it never does."""
    changelog = f"it-wait-{time.time_ns()}-members-changelog"

    async def scenario() -> tuple[bool, bool]:
        missing = await wait_known(kafka_bootstrap, ["ticketloop.never-made"], asyncio.sleep, limit_s=0.5)
        creating = asyncio.create_task(ensure_topics(kafka_bootstrap, [TopicSpec(changelog, 4, "n", "a changelog")]))
        found = await wait_known(kafka_bootstrap, [changelog], asyncio.sleep, limit_s=30)
        await creating
        return missing, found

    missing, found = asyncio.run(scenario())
    assert (missing, found) == (False, True)
