"""A batched read-process-commit loop on aiokafka, for a service whose state lives outside Kafka.

Kafka's own consumer loop, without faust's per-event stream machinery (about 700 µs an event here, issue 14):
``getmany`` hands the handler every record the poll brought (up to ``max_records``, in offset order per
partition), the handler does its work for all of them at once (one SQL transaction for the batch, say), and only
then are the batch's offsets committed. So the guarantee is at-least-once: a crash between the handler's work
and the commit hands the same records to the next owner, and the handler must be idempotent (the notifier's
outbox is keyed by notification id). Records of aborted transactions are never seen (``read_committed``).

A commit does not hold the loop: it runs beside the next batches (one commit at a time, each of offsets
already handled), so a paced stream's events do not wait for the broker's answer every ``commit_interval_s``
(8-65 ms in bench/notify_fanout). A rebalance waits for the batch in hand and the commit in flight: the revoke
callback runs only after every handled offset is committed (aiokafka keeps the member's heartbeat alive during
the callback for exactly this), so a partition's new owner starts where its old one stopped. A handler that keeps
some records' work in memory only for a while (the notifier's notifications sent first) answers, before each
commit, the first offset it still needs per partition, and the commit stops there (``capped``). The decisions (what
to commit, a record's shape) are the pure functions here; ``BatchDriver`` is the shell.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from shared.infra.logging import get_logger
from shared.streaming.stopping import stop_consumer
from shared.streaming.stream_metrics import StreamMetrics

log = get_logger(__name__)

Partition = tuple[str, int]
"""(topic, partition)"""


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed record, as the handler sees it (aiokafka's ConsumerRecord without its generics)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    timestamp_ms: int


def records_of(polled: Mapping[Any, Sequence[Any]]) -> list[Record]:
    """The records of one ``getmany`` as a flat list: partitions one after the other, each in offset order."""
    return [
        Record(m.topic, m.partition, m.offset, m.key, m.value, tuple(m.headers or ()), m.timestamp)
        for _, messages in sorted(polled.items(), key=lambda kv: (kv[0].topic, kv[0].partition))
        for m in messages
    ]


def commit_offsets(records: Iterable[Record]) -> dict[Partition, int]:
    """The offsets to commit once these records are handled: per partition, the next one to read."""
    out: dict[Partition, int] = {}
    for r in records:
        tp = (r.topic, r.partition)
        out[tp] = max(out.get(tp, 0), r.offset + 1)
    return out


def capped(
    pending: Mapping[Partition, int], caps: Mapping[Partition, int], committed: Mapping[Partition, int]
) -> tuple[dict[Partition, int], dict[Partition, int]]:
    """What to commit of the handled offsets ``pending`` while the handler still needs some records read again
    after a crash (``caps``: per partition, the first such offset), and what stays pending for a later commit: a
    partition capped below its handled offset commits up to its cap. An offset already ``committed`` is not sent
    again."""
    commit: dict[Partition, int] = {}
    keep: dict[Partition, int] = {}
    for tp, offset in pending.items():
        cap = caps.get(tp)
        upto = offset if cap is None else min(offset, cap)
        if upto < offset:
            keep[tp] = offset
        if upto > committed.get(tp, -1):
            commit[tp] = upto
    return commit, keep


def commit_due(polled: bool, committed_at: float, now: float, interval_s: float) -> bool:
    """Whether to commit now: when the interval passed since the last commit, or at once when a poll came back
    empty (idle: nothing is gained by waiting)."""
    return not polled or now - committed_at >= interval_s


IDLE_FETCH_WAIT_MS = 100
"""The least a fetch that finds no record is held by the broker (``fetch_max_wait_ms``), whatever the loop's poll
timeout: a record that comes meanwhile answers it at once (``fetch_min_bytes`` 1), so a shorter hold only adds
empty fetches. With the sla's 20 ms timer as the hold, an idle stack fetched 50 times a second for the sla and 20
for the router (their poll timeouts): the two took 9.1% of a core and the broker 10.4%, since 6.5% and 7.0%. Not
longer: a broker answers one connection's requests in order, so an offset lookup (a new assignment's positions,
the notifier's ``end_offsets``) waits behind a held fetch (faust's consumer waits as long: shared/streaming/eos.py)."""


def idle_fetch_wait_ms(poll_ms: int) -> int:
    """How long the broker may hold a fetch that finds no record, for a loop whose polls wait ``poll_ms``."""
    return max(poll_ms, IDLE_FETCH_WAIT_MS)


def group_consumer(
    bootstrap: str,
    group_id: str,
    group_instance_id: str | None,
    session_timeout_s: float,
    heartbeat_interval_s: float,
    poll_ms: int,
    max_records: int,
    **extra: Any,
) -> AIOKafkaConsumer:
    """A member of a consumer group as the drivers run one: offsets committed by the driver, records of aborted
    transactions never seen, from the earliest record when the group has no offset yet."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        group_instance_id=group_instance_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        session_timeout_ms=int(session_timeout_s * 1000),
        heartbeat_interval_ms=int(heartbeat_interval_s * 1000),
        rebalance_timeout_ms=int(session_timeout_s * 1000),
        fetch_max_wait_ms=idle_fetch_wait_ms(poll_ms),
        max_poll_records=max_records,
        **extra,
    )


@dataclass(frozen=True)
class DriverConfig:
    bootstrap: str
    group_id: str
    topics: tuple[str, ...]
    max_records: int = 500
    poll_ms: int = 100
    """How long an idle poll waits (also how soon a stop is noticed)."""
    commit_interval_s: float = 0.5
    """Offsets of handled batches are committed at most this often (and at once on a rebalance, when idle and
    at a stop), as Kafka Streams' commit.interval: a crash hands at most this much work to the next owner again,
    which the idempotent handler drops; a commit per small batch cost a round trip per event when paced."""
    session_timeout_s: float = 10.0
    heartbeat_interval_s: float = 1.0
    group_instance_id: str | None = None
    gather_bytes: int = 1
    """While records come, a fetch is answered once the broker has this much for it (``fetch_min_bytes``), or
    after ``gather_ms``: a paced stream's records then come a few a batch instead of one each (each batch costs
    its own trip through the handler), at the price of up to ``gather_ms`` of latency. 1: at once. After a poll
    that brought nothing, or a fetch that did, a fetch is answered by the first record (``fetch_wait``,
    ``wait_when_dry``)."""
    gather_ms: int | None = None
    """How long a fetch waits for ``gather_bytes`` (None: as long as an idle fetch, ``idle_fetch_wait_ms``)."""


def fetch_wait(brought: bool, config: DriverConfig) -> tuple[int, int]:
    """The next fetch's ``(fetch_min_bytes, fetch_max_wait_ms)``, after a poll that ``brought`` records or not.
    While records come, a fetch gathers (``gather_bytes``, up to ``gather_ms``). After a poll that brought none,
    it is held as an idle one (``idle_fetch_wait_ms``) and answered by the first record: an idle notifier
    gathering for 5 ms fetched 200 times a second (6% of a core, and 10% of the broker's, on this machine), and
    the first event after a quiet spell is not held for ``gather_ms``. A paced stream's fetches keep bringing
    records, so it keeps gathering; a sparse one's first dry fetch ends it (``wait_when_dry``)."""
    idle_ms = idle_fetch_wait_ms(config.poll_ms)
    if brought:
        return config.gather_bytes, idle_ms if config.gather_ms is None else config.gather_ms
    return 1, idle_ms


def set_fetch_wait(consumer: AIOKafkaConsumer, min_bytes: int, max_wait_ms: int) -> None:
    """Make the consumer's next fetch requests wait so. aiokafka (pinned) has no setting for this after start:
    its fetcher builds each request from these two attributes, read when the request is made (one request in
    flight per broker, the next made once the last one's records are taken)."""
    fetcher = consumer._fetcher
    if fetcher is not None:
        fetcher._fetch_min_bytes = min_bytes
        fetcher._fetch_max_wait_ms = max_wait_ms


def wait_when_dry(consumer: AIOKafkaConsumer, config: DriverConfig) -> None:
    """Make a fetch that brings nothing switch the consumer's next fetches to waiting for the first record at once
    (``fetch_wait`` after a poll with none). While the driver gathers, aiokafka's fetcher sends the same gathering
    fetch again the moment one comes back, so a stream that paused was asked every ``gather_ms`` until the driver's
    next poll gave up, up to ``poll_ms`` later: at 25 tickets a second, 5.4 fetches a ticket, 4.4 of them empty.
    A poll that brings records turns gathering on again (``set_fetch_wait``). aiokafka (pinned) runs each fetch
    as ``_proc_fetch_request(assignment, node_id, request)``, looked up on the fetcher each time and answering
    whether it brought records; its next request is built from the fetcher's two attributes once it is back. A
    driver that never gathers (the same wait either way) is left as it is."""
    fetcher = consumer._fetcher
    if fetcher is None or fetch_wait(True, config) == fetch_wait(False, config):
        return
    fetch = fetcher._proc_fetch_request

    async def fetch_then_wait_when_dry(*args: Any) -> Any:
        brought = await fetch(*args)
        if not brought:
            set_fetch_wait(consumer, *fetch_wait(False, config))
        return brought

    fetcher._proc_fetch_request = fetch_then_wait_when_dry


Handler = Callable[[list[Record]], Awaitable[None]]
PartitionsCallback = Callable[[set[Partition]], Awaitable[None]]


async def _nothing(_: set[Partition]) -> None:
    return None


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, driver: BatchDriver) -> None:
        self.driver = driver

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        async with self.driver.lock:  # the batch in hand is handled and everything handled committed first
            await self.driver.settle_commit()
            await self.driver.commit_pending()
            gone = {(tp.topic, tp.partition) for tp in revoked}
            for tp in gone:  # what a cap held back is read again by the partition's next owner
                self.driver.pending.pop(tp, None)
                self.driver.committed.pop(tp, None)
            await self.driver.on_revoked(gone)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.driver.on_assigned({(tp.topic, tp.partition) for tp in assigned})


class BatchDriver:
    """Consume ``config.topics`` as member of ``config.group_id``, batch by batch, until ``stop`` is set."""

    def __init__(
        self,
        config: DriverConfig,
        handle: Handler,
        on_assigned: PartitionsCallback = _nothing,
        on_revoked: PartitionsCallback = _nothing,
        before_commit: Callable[[], Awaitable[Mapping[Partition, int] | None]] | None = None,
        metrics: StreamMetrics | None = None,
    ) -> None:
        self.config = config
        self.handle = handle
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        self.before_commit = before_commit
        """Awaited before offsets are committed: what the handler left in flight is made durable first, or it
        answers, per partition, the first offset it still needs (a commit stops there: ``capped``)."""
        self.metrics = metrics
        """Where the consumer's lag is reported after each poll (None: nowhere)."""
        self.lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None
        self.pending: dict[Partition, int] = {}
        """Offsets handled and not committed yet."""
        self.committed: dict[Partition, int] = {}
        """The offsets this member committed last, per partition."""
        self.committed_at = 0.0
        self.committing: asyncio.Task[None] | None = None
        """The commit in flight beside the loop (at most one)."""

    def _consumer(self) -> AIOKafkaConsumer:
        c = self.config
        return group_consumer(
            c.bootstrap,
            c.group_id,
            c.group_instance_id,
            c.session_timeout_s,
            c.heartbeat_interval_s,
            c.poll_ms,
            c.max_records,
            fetch_min_bytes=1,  # the first fetch waits for the first record (fetch_wait after a poll with none)
        )

    async def run(self, stop: asyncio.Event) -> None:
        consumer = self.consumer = self._consumer()
        consumer.subscribe(list(self.config.topics), listener=_Listener(self))
        await consumer.start()
        wait_when_dry(consumer, self.config)
        try:
            while not stop.is_set():
                polled = await consumer.getmany(timeout_ms=self.config.poll_ms, max_records=self.config.max_records)
                set_fetch_wait(consumer, *fetch_wait(bool(polled), self.config))  # before the fetcher's next turn
                if self.metrics is not None:
                    self.metrics.observe_lag(self.config.group_id, consumer)
                async with self.lock:
                    if polled:
                        records = records_of(polled)
                        await self.handle(records)
                        self.pending.update(commit_offsets(records))
                    if self.committing is not None and self.committing.done():
                        await self.settle_commit()  # its error, if any, stops the worker as an inline one did
                    due = commit_due(bool(polled), self.committed_at, time.monotonic(), self.config.commit_interval_s)
                    if due and self.committing is None and self.pending:
                        self.committing = asyncio.create_task(self.commit_pending(), name="driver commit")
            async with self.lock:
                await self.settle_commit()
                await self.commit_pending()
        finally:
            if self.committing is not None:  # cancelled or failed: the next owner reads the uncommitted again
                self.committing.cancel()
                await asyncio.gather(self.committing, return_exceptions=True)
                self.committing = None
            if self.metrics is not None:
                self.metrics.lag.forget(self.config.group_id)
            await stop_consumer(consumer)

    async def settle_commit(self) -> None:
        """Wait for the commit in flight, if any (a rebalance, a stop, or the next commit must not overtake it)."""
        task, self.committing = self.committing, None
        if task is not None:
            await task

    async def end_offsets(self, partitions: Iterable[Partition]) -> dict[Partition, int]:
        """Where these partitions end now (for ``read_committed``, the last stable offset): records below it may
        have been handled by a previous owner that did not commit them."""
        if self.consumer is None:
            raise RuntimeError("the driver is not running")
        ends = await self.consumer.end_offsets([TopicPartition(t, p) for t, p in partitions])
        return {(tp.topic, tp.partition): int(o) for tp, o in ends.items()}

    async def commit_pending(self) -> None:
        """Commit what was handled; when a partition went elsewhere meanwhile, its new owner reads those records
        again (the handler is idempotent), so that is logged, not raised."""
        offsets, self.pending = self.pending, {}
        self.committed_at = time.monotonic()
        if not offsets or self.consumer is None:
            return
        caps = await self.before_commit() if self.before_commit is not None else None
        offsets, keep = capped(offsets, caps or {}, self.committed)
        for tp, offset in keep.items():  # newer offsets handled meanwhile stay as they are
            self.pending.setdefault(tp, offset)
        if not offsets:
            return
        try:
            await self.consumer.commit({TopicPartition(t, p): o for (t, p), o in offsets.items()})
            self.committed.update(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("commit_skipped", error=type(exc).__name__, partitions=len(offsets))
        except KafkaError as exc:
            log.error("commit_failed", error=type(exc).__name__, partitions=len(offsets))  # noqa: TRY400
