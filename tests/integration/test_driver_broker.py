"""The batched aiokafka driver (shared/streaming/driver.py) on the real broker: at-least-once, commits on a rebalance, and
never a record of an aborted transaction."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from prometheus_client import CollectorRegistry

from shared.streaming.driver import BatchDriver, DriverConfig, Partition, Record
from shared.streaming.stream_metrics import StreamMetrics
from shared.streaming.topics import TopicSpec, ensure_topics
from tests.support.kafka_io import produce
from tests.support.waiting import until

pytestmark = pytest.mark.timeout(180)


async def new_topic(bootstrap: str, partitions: int = 2) -> str:
    name = f"driver-{uuid.uuid4().hex[:10]}"
    await ensure_topics(bootstrap, [TopicSpec(name, partitions, "any", "a driver test topic")])
    return name


def config(bootstrap: str, topic: str, group: str, commit_interval_s: float = 0.5) -> DriverConfig:
    return DriverConfig(
        bootstrap=bootstrap,
        group_id=group,
        topics=(topic,),
        session_timeout_s=6.0,
        heartbeat_interval_s=0.5,
        commit_interval_s=commit_interval_s,
    )


class Seen:
    """What a driver handed its handler, and a way to wait for a count."""

    def __init__(self, also: Seen | None = None) -> None:
        self.values: list[bytes] = []
        self.batches = 0
        self.changed = asyncio.Event()
        self.also = also
        """Told of the same records (what the members of one group saw together)."""

    async def handle(self, records: list[Record]) -> None:
        self.batches += 1
        self.values.extend(r.value or b"" for r in records)
        self.changed.set()
        if self.also is not None:
            await self.also.handle(records)

    async def wait(self, n: int, within_s: float = 60.0) -> None:
        async def reach() -> None:
            while len(self.values) < n:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(reach(), within_s)


async def running(driver: BatchDriver) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    return stop, asyncio.create_task(driver.run(stop))


async def stopped(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    stop.set()
    await asyncio.wait_for(task, 30)


async def killed(task: asyncio.Task[None]) -> None:
    """As a SIGKILL would leave it for the group: whatever was handled and not committed is not committed."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def next_owner_reads(bootstrap: str, topic: str, group: str, n: int) -> list[bytes]:
    """What a new member of the group is handed, once it has ``n`` records (it then stops cleanly)."""
    seen = Seen()
    stop, task = await running(BatchDriver(config(bootstrap, topic, group), seen.handle))
    await seen.wait(n)
    await stopped(stop, task)
    return seen.values


def values(n: int, prefix: str) -> list[tuple[str, bytes]]:
    return [(f"k{i}", f"{prefix}{i}".encode()) for i in range(n)]


async def test_batches_are_committed_and_a_restart_starts_after_them(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap)
    group = f"g-{uuid.uuid4().hex[:8]}"
    await produce(kafka_bootstrap, topic, values(200, "a"))
    first = Seen()
    stop, task = await running(BatchDriver(config(kafka_bootstrap, topic, group), first.handle))
    await first.wait(200)
    await stopped(stop, task)
    assert sorted(first.values) == sorted(v for _, v in values(200, "a"))
    assert first.batches < 200, "records come in batches, not one by one"

    await produce(kafka_bootstrap, topic, values(10, "b"))
    second = Seen()
    stop, task = await running(BatchDriver(config(kafka_bootstrap, topic, group), second.handle))
    await second.wait(10)
    await stopped(stop, task)
    assert sorted(second.values) == sorted(v for _, v in values(10, "b"))


async def test_what_was_handled_but_not_committed_is_handed_out_again(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap)
    group = f"g-{uuid.uuid4().hex[:8]}"
    await produce(kafka_bootstrap, topic, values(20, "a"))
    first = Seen()
    # no commit for a minute: the records are handled, then the worker dies before committing them
    _, task = await running(BatchDriver(config(kafka_bootstrap, topic, group, commit_interval_s=60.0), first.handle))
    await first.wait(20)
    await killed(task)

    assert sorted(await next_owner_reads(kafka_bootstrap, topic, group, 20)) == sorted(first.values)


async def test_offsets_wait_for_the_before_commit_hook(kafka_bootstrap: str) -> None:
    """The notifier's checkpoint (what its lanes hold, written to the outbox) runs before a commit: while it has
    not finished, nothing is committed, and a worker dying then hands every record to the next owner."""
    topic = await new_topic(kafka_bootstrap)
    group = f"g-{uuid.uuid4().hex[:8]}"
    await produce(kafka_bootstrap, topic, values(20, "a"))
    first = Seen()
    asked = asyncio.Event()

    async def never_done() -> None:
        asked.set()
        await asyncio.Event().wait()

    driver = BatchDriver(config(kafka_bootstrap, topic, group), first.handle, before_commit=never_done)
    _, task = await running(driver)
    await first.wait(20)
    await asyncio.wait_for(asked.wait(), 60)
    await killed(task)

    assert sorted(await next_owner_reads(kafka_bootstrap, topic, group, 20)) == sorted(first.values)


async def test_a_commit_stops_where_the_hook_still_needs_records_and_goes_on_once_they_are_done(
    kafka_bootstrap: str,
) -> None:
    """The notifier's checkpoint answers the first offset whose notifications it still holds only in memory: the
    commit stops there, so a worker dying then hands the next owner those records again (and no earlier ones);
    once the hook needs nothing, the next commit reaches everything handled."""
    topic = await new_topic(kafka_bootstrap, partitions=1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    await produce(kafka_bootstrap, topic, values(20, "a"))
    needs: dict[Partition, int] = {(topic, 0): 5}

    async def hook() -> dict[Partition, int]:
        return dict(needs)

    first = Seen()
    driver = BatchDriver(config(kafka_bootstrap, topic, group), first.handle, before_commit=hook)
    _, task = await running(driver)
    await first.wait(20)
    await until("committed up to the cap", lambda: driver.committed.get((topic, 0)) == 5)
    await killed(task)

    second = Seen()
    needs[(topic, 0)] = 12
    driver = BatchDriver(config(kafka_bootstrap, topic, group), second.handle, before_commit=hook)
    stop, task = await running(driver)
    await second.wait(15)
    await until("committed up to the new cap", lambda: driver.committed.get((topic, 0)) == 12)
    needs.clear()
    await until("committed to the end once nothing is needed", lambda: driver.committed.get((topic, 0)) == 20)
    await stopped(stop, task)

    await produce(kafka_bootstrap, topic, values(1, "c"))
    assert second.values == first.values[5:], "the next owner read from the cap on"
    assert await next_owner_reads(kafka_bootstrap, topic, group, 1) == [b"c0"]


async def test_the_next_batches_are_handled_while_a_commit_waits_and_a_stop_waits_for_it(kafka_bootstrap: str) -> None:
    """A commit runs beside the loop: while the notifier's checkpoint (or the broker's answer) holds one, newer
    records are handled at once; a stop then waits for it and commits everything handled."""
    topic = await new_topic(kafka_bootstrap)
    group = f"g-{uuid.uuid4().hex[:8]}"
    await produce(kafka_bootstrap, topic, values(20, "a"))
    seen = Seen()
    asked, release = asyncio.Event(), asyncio.Event()

    async def held() -> None:
        asked.set()
        await release.wait()

    stop, task = await running(BatchDriver(config(kafka_bootstrap, topic, group), seen.handle, before_commit=held))
    await seen.wait(20)
    await asyncio.wait_for(asked.wait(), 60)
    await produce(kafka_bootstrap, topic, values(20, "b"))
    await seen.wait(40)  # an inline commit would hold these until the release below
    stop.set()
    release.set()
    await asyncio.wait_for(task, 30)

    await produce(kafka_bootstrap, topic, values(1, "c"))
    assert await next_owner_reads(kafka_bootstrap, topic, group, 1) == [b"c0"], "everything handled was committed"


async def test_a_rebalance_waits_for_the_batch_in_hand_and_commits_it_before_the_partitions_move(
    kafka_bootstrap: str,
) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=4)
    group = f"g-{uuid.uuid4().hex[:8]}"
    await produce(kafka_bootstrap, topic, values(100, "a"))
    release = asyncio.Event()
    together = Seen()
    first = Seen(also=together)
    revoked: list[set[Partition]] = []

    async def held(records: list[Record]) -> None:
        await first.handle(records)
        await release.wait()  # the first batch stays in hand until the group is rebalancing

    async def on_revoked(partitions: set[Partition]) -> None:
        revoked.append(partitions)

    slow_commits = config(kafka_bootstrap, topic, group, commit_interval_s=600.0)
    stop1, task1 = await running(BatchDriver(slow_commits, held, on_revoked=on_revoked))
    await first.wait(1)
    # a second member joins while the first holds a batch it has not committed (no commit for ten minutes)
    second = Seen(also=together)
    stop2, task2 = await running(BatchDriver(slow_commits, second.handle))
    await wait_for_state(kafka_bootstrap, group, {"PreparingRebalance", "CompletingRebalance"})
    release.set()
    await produce(kafka_bootstrap, topic, values(40, "b"))
    await together.wait(len(first.values) + 40 - len([v for v in first.values if v.startswith(b"b")]))
    await stopped(stop2, task2)
    await stopped(stop1, task1)
    assert revoked, "the first member was told its partitions were revoked"
    handled_first = {v for v in first.values if v.startswith(b"a")}
    assert not handled_first & set(second.values), "a batch the first member handled came again to the second"


async def wait_for_state(bootstrap: str, group: str, states: set[str], within_s: float = 60.0) -> None:
    """Until the broker reports the group in one of ``states`` (read with the admin API's DescribeGroups)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while loop.time() < deadline:
            [response] = await admin.describe_consumer_groups([group])
            state = response.to_object()["groups"][0]["state"]
            if state in states:
                return
            await asyncio.sleep(0.05)
    finally:
        await admin.close()
    raise AssertionError(f"group {group} never reached {states}")


async def test_records_of_an_aborted_transaction_are_never_handed_out(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"tx-{uuid.uuid4().hex[:8]}")
    await producer.start()
    try:
        await in_transaction(producer, lambda: producer.send_and_wait(topic, b"aborted"), commit=False)
        await in_transaction(producer, lambda: producer.send_and_wait(topic, b"committed"), commit=True)
    finally:
        await producer.stop()
    seen = Seen()
    group = f"g-{uuid.uuid4().hex[:8]}"
    metrics = StreamMetrics(CollectorRegistry(), "test")
    stop, task = await running(BatchDriver(config(kafka_bootstrap, topic, group), seen.handle, metrics=metrics))
    await seen.wait(1)
    # four offsets (two records, two markers), one record handed out: a consumer past it all is 0 behind
    await until("no lag", lambda: metrics.lag.groups.get(group) == {topic: 0})
    await stopped(stop, task)
    assert seen.values == [b"committed"]


async def test_the_lag_is_what_is_left_to_read_of_the_assigned_partitions(kafka_bootstrap: str) -> None:
    """After each poll the driver reports, per topic, how far its assigned partitions are behind their ends; when a
    second member takes a topic over, the first stops reporting it; a stopped driver reports nothing."""
    a, b = await new_topic(kafka_bootstrap, partitions=1), await new_topic(kafka_bootstrap, partitions=1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    await produce(kafka_bootstrap, a, values(40, "a"))
    await produce(kafka_bootstrap, b, values(25, "b"))
    produced = {a: 40, b: 25}
    metrics = StreamMetrics(CollectorRegistry(), "test")
    handed: Counter[str] = Counter()
    seen: list[tuple[dict[str, int], dict[str, int]]] = []  # the lag reported before each batch, what was handed

    async def handle(records: list[Record]) -> None:
        handed.update(r.topic for r in records)
        seen.append((dict(metrics.lag.groups.get(group, {})), dict(handed)))

    both = replace(config(kafka_bootstrap, a, group), topics=(a, b), max_records=10)
    stop1, task1 = await running(BatchDriver(both, handle, metrics=metrics))
    await until("all read", lambda: sum(handed.values()) == 65 and metrics.lag.groups.get(group) == {a: 0, b: 0})
    first_lag, _ = seen[0]
    assert first_lag and all(lag > 0 for lag in first_lag.values()), seen[0]
    for lag, so_far in seen:  # everything was on the broker before the first fetch: exact
        assert all(n == produced[t] - so_far.get(t, 0) for t, n in lag.items()), (lag, so_far)

    other = StreamMetrics(CollectorRegistry(), "test")
    stop2, task2 = await running(BatchDriver(both, Seen().handle, metrics=other))
    await until(
        "a topic each", lambda: len(metrics.lag.groups.get(group, {})) == len(other.lag.groups.get(group, {})) == 1
    )
    assert metrics.lag.groups[group].keys() | other.lag.groups[group].keys() == {a, b}, "one topic each"
    await stopped(stop2, task2)
    await stopped(stop1, task1)
    assert metrics.lag.groups == other.lag.groups == {}


class Gathering:
    """A driver on a new one-partition topic that gathers (64 KiB, ``gather_ms``), and the wait of the consumer's
    next fetch (min bytes, max wait) as each of its batches was handled."""

    def __init__(self, bootstrap: str, topic: str, poll_ms: int, gather_ms: int) -> None:
        group = f"g-{uuid.uuid4().hex[:8]}"
        gathering = replace(config(bootstrap, topic, group), poll_ms=poll_ms, gather_bytes=65_536, gather_ms=gather_ms)
        self.bootstrap, self.topic = bootstrap, topic
        self.seen = Seen()
        self.waits: list[tuple[int, int]] = []
        self.driver = BatchDriver(gathering, self.handle)

    def next_fetch(self) -> tuple[int, int]:
        assert self.driver.consumer is not None
        fetcher = self.driver.consumer._fetcher  # aiokafka's, pinned: what its next request is built from
        return fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms

    async def handle(self, records: list[Record]) -> None:
        self.waits.append(self.next_fetch())
        await self.seen.handle(records)

    async def start(self) -> tuple[asyncio.Event, asyncio.Task[None]]:
        started = await running(driver := self.driver)
        await until("assigned", lambda: driver.consumer is not None and bool(driver.consumer.assignment()))
        return started

    async def one(self, value: str, n: int) -> None:
        """Produce one record, and wait until ``n`` were handled."""
        await produce(self.bootstrap, self.topic, values(1, value))
        await self.seen.wait(n, within_s=20.0)


async def test_a_fetch_gathers_only_while_records_come_and_the_first_record_after_a_quiet_poll_is_not_held(
    kafka_bootstrap: str,
) -> None:
    """A gather far longer than any wait here (a fetch would wait 30 s for 64 KiB): a record produced to an idle
    member is handled at once all the same, because a fetch after a poll that brought nothing (and the first) is
    answered by the first record. The poll that brought it makes the next fetches gather; a quiet poll ends that."""
    lab = Gathering(kafka_bootstrap, await new_topic(kafka_bootstrap, partitions=1), poll_ms=100, gather_ms=30_000)
    stop, task = await lab.start()
    await lab.one("a", 1)  # a first fetch that gathered would have held it 30 s
    assert lab.waits == [(65_536, 30_000)], "a poll that brought records: the next fetches gather"
    await until("a quiet poll ends the gathering", lambda: lab.next_fetch() == (1, 100))
    await stopped(stop, task)


async def test_a_gathering_fetch_that_comes_back_dry_makes_the_next_fetch_wait_for_the_first_record(
    kafka_bootstrap: str,
) -> None:
    """A stream that pauses: once the poll that brought its last record made the fetches gather (5 ms here), the
    first of them that comes back with nothing switches the next to waiting for the first record, at once; before,
    aiokafka sent the gathering fetch again every 5 ms until the driver's poll gave up (5 s here)."""
    lab = Gathering(kafka_bootstrap, await new_topic(kafka_bootstrap, partitions=1), poll_ms=5_000, gather_ms=5)
    stop, task = await lab.start()
    await lab.one("a", 1)
    assert lab.waits == [(65_536, 5)], "a poll that brought records: the next fetches gather"
    # well before the poll in hand gives up (5 s), which would set the same wait
    await until("a dry fetch ends the gathering", lambda: lab.next_fetch() == (1, 5_000), within_s=3.0)
    await lab.one("b", 2)
    assert lab.waits[1] == (65_536, 5), "the next record's poll gathers again"
    await stopped(stop, task)


async def in_transaction(producer: AIOKafkaProducer, send: Callable[[], Awaitable[object]], *, commit: bool) -> None:
    await producer.begin_transaction()
    await send()
    if commit:
        await producer.commit_transaction()
    else:
        await producer.abort_transaction()


async def test_a_changelog_is_created_compacted_with_hourly_segments_and_an_input_with_the_defaults(
    kafka_bootstrap: str,
) -> None:
    name = f"topics-{uuid.uuid4().hex[:10]}"
    specs = [TopicSpec(f"{name}-changelog", 2, "key", "a table", compacted=True), TopicSpec(name, 2, "key", "in")]
    await ensure_topics(kafka_bootstrap, specs)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        found: dict[str, dict[str, str]] = {}
        for spec in specs:
            (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name)])
            ((_, _, _, _, entries),) = response.resources
            found[spec.name] = {entry[0]: entry[1] for entry in entries}
    finally:
        await admin.close()
    changelog, plain = found[f"{name}-changelog"], found[name]
    assert (changelog["cleanup.policy"], changelog["segment.ms"]) == ("compact", "3600000")
    assert plain["cleanup.policy"] == "delete" and plain["segment.ms"] == "604800000", "the broker's defaults"
