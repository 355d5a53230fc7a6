"""The exactly-once driver (shared/streaming/transactional.py) on the real broker: outputs, table changes and
input offsets commit together per partition; a worker that dies mid-transaction leaves nothing visible, and the
next one does the work again from the committed state; a restart reloads its tables from their changelogs."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter as Tally

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from prometheus_client import CollectorRegistry

from deploy.local.kafka_local import LocalKafka
from shared.streaming.driver import Record
from shared.streaming.stream_metrics import DEADLETTERS, REASON_KINDS, StreamMetrics
from shared.streaming.topics import TopicSpec, ensure_topics
from shared.streaming.transactional import PartitionCountError, Task, TransactionalDriver, TxConfig
from tests.support.kafka_io import produce, read_all
from tests.support.waiting import until

pytestmark = pytest.mark.timeout(240)
PARTITIONS = 3


class CrashError(BaseException):
    """The worker dies here (the driver lets it out, as a bug or a SIGKILL would end the process)."""


class Counting:
    """Counts each key's records in a table and sends the running count; can crash after ``crash_after``."""

    tables: tuple[str, ...] = ("counts",)

    def __init__(self, crash_after: int | None = None, batch_s: float = 0.0, poison: bytes | None = None) -> None:
        self.crash_after = crash_after
        self.poison = poison
        """Handling a record with this value raises, as a bug would."""
        self.batch_s = batch_s
        """CPU time a batch takes (a worker busy with its work: the loop is held as real work would hold it)."""
        self.handled = 0
        self.progress = asyncio.Event()

    def process(self, task: Task, records: list[Record]) -> None:
        for r in records:
            if self.crash_after is not None and self.handled >= self.crash_after:
                raise CrashError
            key = r.key or b""
            n = (task.load("counts", key, int) or 0) + 1
            if r.value == b"bad":  # what a processor does with a record it cannot take: in the transaction
                task.dead_letter(f"{r.topic}-dl", "test", r, "a bad value", "undecodable")
                continue
            if r.value == self.poison:
                task.store("counts", key, -1000, lambda v: str(v).encode())  # half-made: must not survive
                task.send(f"{r.topic}-out", key, b"half-made")
                raise ValueError("a bug")
            task.store("counts", key, n, lambda v: str(v).encode())
            task.send(f"{r.topic}-out", key, f"{key.decode()}={n}".encode())
            self.handled += 1
        if self.batch_s:
            time.sleep(self.batch_s)
        self.progress.set()

    def punctuate(self, task: Task, now: float) -> None:
        pass


async def setup(bootstrap: str) -> tuple[str, str]:
    name = f"tx-{uuid.uuid4().hex[:10]}"
    await ensure_topics(
        bootstrap,
        [
            TopicSpec(name, PARTITIONS, "k", "in"),
            TopicSpec(f"{name}-out", PARTITIONS, "k", "out"),
            TopicSpec(f"{name}-dl", 1, "k", "dead letters"),
        ],
    )
    return name, f"{name}-g"


def config(bootstrap: str, topic: str, group: str, **over: object) -> TxConfig:
    base = TxConfig(
        bootstrap=bootstrap,
        group_id=group,
        topics=(topic,),
        partitions=PARTITIONS,
        service="test",
        deadletter_topic=f"{topic}-dl",
        session_timeout_s=6.0,
        heartbeat_interval_s=0.5,
    )
    return TxConfig(**{**base.__dict__, **over})


def final_counts(values: list[str]) -> dict[str, int]:
    """Each key's highest count among the outputs ("key=count")."""
    last: dict[str, int] = {}
    for v in values:
        key, n = v.split("=")
        last[key] = max(last.get(key, 0), int(n))
    return last


def records(n: int, keys: int, prefix: str = "") -> list[tuple[str, bytes]]:
    return [(f"{prefix}k{i % keys}", b"x") for i in range(n)]


async def run_until(driver: TransactionalDriver, done: asyncio.Event | None = None, within_s: float = 90.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(driver.run(stop))
    if done is not None:
        waiter = asyncio.create_task(done.wait())
        await asyncio.wait({task, waiter}, timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
    stop.set()
    await asyncio.wait_for(task, 30)


async def until_handled(processor: Counting, n: int) -> None:
    while processor.handled < n:
        processor.progress.clear()
        await processor.progress.wait()


async def test_a_crash_mid_transaction_leaves_nothing_visible_and_the_next_worker_counts_exactly(
    kafka_bootstrap: str,
) -> None:
    topic, group = await setup(kafka_bootstrap)
    await produce(kafka_bootstrap, topic, records(600, 12))
    # small batches, no commit for a minute: several batches are sent in open transactions, then the worker dies
    crashing = Counting(crash_after=400)
    driver = TransactionalDriver(
        config(kafka_bootstrap, topic, group, max_records=50, commit_interval_s=60.0), crashing
    )
    with pytest.raises(CrashError):
        await asyncio.wait_for(driver.run(asyncio.Event()), 90)
    assert crashing.handled == 400
    sent = await read_all(kafka_bootstrap, f"{topic}-out", expect=400, within_s=30)
    assert len(sent) >= 400, "the dead worker's outputs reached the broker, in transactions never committed"

    counting = Counting()
    done = asyncio.Event()
    finish = asyncio.create_task(until_handled(counting, 600))
    finish.add_done_callback(lambda _: done.set())
    await run_until(TransactionalDriver(config(kafka_bootstrap, topic, group), counting), done)
    assert counting.handled == 600, "everything is handled again: nothing of the dead worker's was committed"
    out = await read_all(kafka_bootstrap, f"{topic}-out", expect=600, committed_only=True)
    values = [r.value.decode() for r in out]
    assert len(values) == 600 and len(set(values)) == 600, "each count once: no output of the dead worker is seen"
    finals = Tally(v.split("=")[0] for v in values)
    assert set(finals.values()) == {50}


async def test_a_restart_reloads_its_tables_from_the_changelogs_and_goes_on_from_the_committed_offsets(
    kafka_bootstrap: str,
) -> None:
    topic, group = await setup(kafka_bootstrap)
    await produce(kafka_bootstrap, topic, records(90, 9))
    first = Counting()
    done = asyncio.Event()
    asyncio.create_task(until_handled(first, 90)).add_done_callback(lambda _: done.set())
    await run_until(TransactionalDriver(config(kafka_bootstrap, topic, group), first), done)
    assert first.handled == 90

    await produce(kafka_bootstrap, topic, records(18, 9))
    second = Counting()
    done = asyncio.Event()
    asyncio.create_task(until_handled(second, 18)).add_done_callback(lambda _: done.set())
    await run_until(TransactionalDriver(config(kafka_bootstrap, topic, group), second), done)
    assert second.handled == 18, "only what came after the committed offsets"
    out = await read_all(kafka_bootstrap, f"{topic}-out", expect=108, committed_only=True)
    assert final_counts([r.value.decode() for r in out if r.value is not None]) == {f"k{i}": 12 for i in range(9)}, (
        "the counts went on from the reloaded table (10 + 2 each)"
    )


async def outage_mid_stream(outage_s: float, **over: object) -> None:
    """3,000 records under way, the broker stopped for ``outage_s`` (beyond its own stop and start) and started
    again, 300 more after: every one is counted exactly once, and the worker never stops."""
    with LocalKafka() as broker:
        bootstrap = broker.bootstrap
        topic, group = await setup(bootstrap)
        await produce(bootstrap, topic, records(3000, 10))
        counting = Counting(batch_s=0.01)
        stop = asyncio.Event()
        small = config(bootstrap, topic, group, max_records=50, **over)  # many transactions: some open at the halt
        running = asyncio.create_task(TransactionalDriver(small, counting).run(stop))
        await asyncio.wait_for(until_handled(counting, 300), 90)
        await asyncio.to_thread(broker.halt)
        if outage_s:
            await asyncio.sleep(outage_s)  # the outage itself, not a wait for something to happen
        await asyncio.to_thread(broker.resume)
        await produce(bootstrap, topic, records(300, 10, prefix="b"))
        out: list[ConsumerRecord] = []
        for _ in range(60):  # bounded: until all 3,300 counts are there, committed
            assert not running.done(), f"the worker stopped: {running.exception()!r}"
            out = await read_all(bootstrap, f"{topic}-out", expect=3300, within_s=5, committed_only=True)
            if len(out) >= 3300:
                break
        stop.set()
        await asyncio.wait_for(running, 60)
    values = [r.value.decode() for r in out if r.value is not None]
    assert len(values) == 3300 and len(set(values)) == 3300, (
        f"every count once: {len(values)} {len(set(values))} {counting.handled}"
    )
    assert final_counts(values) == {**{f"k{i}": 300 for i in range(10)}, **{f"bk{i}": 30 for i in range(10)}}
    assert counting.handled >= 3300


async def test_a_broker_restart_mid_stream_loses_nothing_and_repeats_nothing() -> None:
    """The broker goes away while the driver works and comes back: the transactions in flight fail, their tasks
    are rebuilt from what was committed, and every input is counted exactly once in the end."""
    await outage_mid_stream(0.0)


async def test_an_outage_longer_than_the_transaction_timeout_rebuilds_the_tasks_and_the_worker_goes_on() -> None:
    """The broker away for longer than the transactions may stay open (the coordinator aborts them when it is
    back): the worker's tasks are rebuilt from what was committed instead of the worker stopping, and every
    input counts once."""
    await outage_mid_stream(6.0, transaction_timeout_s=3.0)


async def test_a_second_worker_takes_over_partitions_mid_stream_and_every_input_counts_once(
    kafka_bootstrap: str,
) -> None:
    """Two members of one group: the second joins while the first is working through a backlog in small
    transactions (slowed, so the move lands mid-stream); the first commits what it handled and lets go of the
    partitions that move, the second builds them from their changelogs and the offsets stored with them. Then
    more records come, some to each."""
    topic, group = await setup(kafka_bootstrap)
    await produce(kafka_bootstrap, topic, records(3000, 12))
    first, second = Counting(batch_s=0.02), Counting()
    stop = asyncio.Event()
    small = config(kafka_bootstrap, topic, group, max_records=50)
    one = asyncio.create_task(TransactionalDriver(small, first).run(stop))
    await asyncio.wait_for(until_handled(first, 300), 90)
    taker = TransactionalDriver(small, second)
    two = asyncio.create_task(taker.run(stop))
    for _ in range(300):  # bounded: until the second member holds a task
        if taker.tasks:
            break
        await asyncio.sleep(0.1)
    await produce(kafka_bootstrap, topic, records(600, 12, prefix="b"))
    out: list[ConsumerRecord] = []
    for _ in range(60):  # bounded: until all 3,600 counts are there, committed
        out = await read_all(kafka_bootstrap, f"{topic}-out", expect=3600, within_s=5, committed_only=True)
        if len(out) >= 3600:
            break
    stop.set()
    await asyncio.wait_for(asyncio.gather(one, two), 60)
    values = [r.value.decode() for r in out if r.value is not None]
    assert len(values) == 3600 and len(set(values)) == 3600, "every count once, whichever worker made it"
    assert second.handled > 0 and first.handled > 0
    assert final_counts(values) == {**{f"k{i}": 250 for i in range(12)}, **{f"bk{i}": 50 for i in range(12)}}


async def test_a_record_whose_handling_raises_is_dead_lettered_and_its_half_made_changes_are_dropped(
    kafka_bootstrap: str,
) -> None:
    topic, group = await setup(kafka_bootstrap)
    await produce(kafka_bootstrap, topic, records(60, 6))  # 20 records a key, one of k3's poison
    # a bad record dead-lettered in the transaction the poison record then breaks (aborted): sent again, counted once
    await produce(kafka_bootstrap, topic, [("k3", b"bad"), ("k3", b"poison")])
    await produce(kafka_bootstrap, topic, records(60, 6))
    counting = Counting(poison=b"poison")
    done = asyncio.Event()
    asyncio.create_task(until_handled(counting, 120)).add_done_callback(lambda _: done.set())
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry, "test")
    await run_until(TransactionalDriver(config(kafka_bootstrap, topic, group), counting, metrics=metrics), done)
    out = await read_all(kafka_bootstrap, f"{topic}-out", expect=120, committed_only=True)
    values = [r.value.decode() for r in out if r.value is not None]
    assert "half-made" not in values, "what the failed handling sent went with its transaction"
    assert len(values) == 120 and len(set(values)) == 120
    assert final_counts(values) == {f"k{i}": 20 for i in range(6)}, "the poison record counted nowhere, the rest once"
    bad, dead = await read_all(kafka_bootstrap, f"{topic}-dl", expect=2, committed_only=True)
    assert bad.value is not None and b"a bad value" in bad.value
    assert dead.value is not None and b"handling failed: ValueError" in dead.value
    counted = {
        kind: registry.get_sample_value(DEADLETTERS, {"service": "test", "reason_kind": kind}) for kind in REASON_KINDS
    }
    assert counted == {**dict.fromkeys(REASON_KINDS, 0.0), "handling_failed": 1.0, "undecodable": 1.0}, (
        "each counted once, when the transaction that sent it committed (not when an aborted one sent it)"
    )


async def test_the_lag_falls_to_zero_once_everything_is_read_past_the_transaction_markers(
    kafka_bootstrap: str,
) -> None:
    """Inputs written in transactions (as the services' own hops are): each commit marker takes an offset the
    consumer never hands out; a worker that handled everything is 0 behind, and it was behind while it worked."""
    topic, group = await setup(kafka_bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{group}-writer")
    await producer.start()
    try:
        for t in range(5):
            await producer.begin_transaction()
            for i in range(60):
                await producer.send(topic, b"x", key=f"k{(t * 60 + i) % 12}".encode())
            await producer.commit_transaction()
    finally:
        await producer.stop()
    metrics = StreamMetrics(CollectorRegistry(), "test")
    behind: list[int] = []

    class Watching(Counting):
        def process(self, task: Task, records: list[Record]) -> None:
            behind.append(sum(metrics.lag.groups.get(group, {}).values()))
            super().process(task, records)

    counting = Watching()
    done = asyncio.Event()

    async def caught_up() -> None:
        await until_handled(counting, 300)
        await until("no lag", lambda: metrics.lag.groups.get(group) == {topic: 0})
        done.set()

    waiting = asyncio.create_task(caught_up())
    driver = TransactionalDriver(config(kafka_bootstrap, topic, group, max_records=20), counting, metrics=metrics)
    await run_until(driver, done)
    waiting.cancel()
    assert done.is_set(), f"the lag never fell to 0: {metrics.lag.groups}"
    assert behind and max(behind) > 0, "behind while it worked through the backlog"
    assert metrics.lag.groups == {}, "a stopped worker reports no lag"


async def test_a_source_topic_with_another_partition_count_stops_the_worker_before_it_handles_anything(
    kafka_bootstrap: str,
) -> None:
    topic, group = await setup(kafka_bootstrap)
    await produce(kafka_bootstrap, topic, records(10, 2))
    counting = Counting()
    driver = TransactionalDriver(config(kafka_bootstrap, topic, group, partitions=PARTITIONS + 2), counting)
    with pytest.raises(PartitionCountError) as err:
        await asyncio.wait_for(driver.run(asyncio.Event()), 60)
    assert f"topic {topic} has {PARTITIONS} partitions" in str(err.value)
    assert f"configured for {PARTITIONS + 2}" in str(err.value)
    assert counting.handled == 0
