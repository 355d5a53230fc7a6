"""Exactly-once read-process-write in batches on aiokafka: Kafka's own transactional loop, without faust.

faust's per-event stream machinery costs about 700 µs an event here, and a faust agent that does nothing but
consume reads 0.17-0.22x what a bare aiokafka loop does (bench/faust_ceiling). This driver is that bare loop with
Kafka's exactly-once protocol around it, as Kafka Streams builds it:

- **Tasks.** The source topics are co-partitioned (same partition count, keyed alike) and the range assignor
  gives partition p of each to the same member, so the work on partition number p is one task. A task holds the
  state of p (one dict per table; the table's changelog is partition p of a compacted topic) and one
  transactional producer whose id names p (``<group>-tx-<p>``): a new owner of p fences the old one, and
  starting it aborts whatever the old one left open.
- **Batches.** ``getmany`` → the records split by partition → the processor handles each partition's records
  (plain function calls, no await: it changes the task's tables, each change queued for the changelog, and
  queues its outputs) → the driver sends what was queued through the task's producer, inside its open
  transaction. Every ``commit_interval_s`` (and when idle, before a rebalance and at stop) each task with work
  commits: its sends acknowledged, its input offsets added (``send_offsets_to_transaction``), the transaction
  committed. Outputs, state changes and input offsets are one atomic unit per partition; consumers that read
  committed (all of ours) never see aborted work.
- **Assignment.** For each newly assigned p: its producer started (fences, aborts), its tables loaded from
  their changelogs (read committed up to the last stable offset, a plain consumer, large fetches), and its
  source partitions moved to where its state stands: the offsets its last transaction wrote into its own
  ``_offsets`` changelog (the group's committed offsets are the fallback: offsets committed in a transaction
  reach an offset fetch only some time after the commit). On revocation: everything committed, the producers
  stopped, the state dropped.
- **Faults.** A send or commit that fails (broker gone, a request timed out, aiokafka's transaction manager in an
  error state) breaks the task: after the healthy tasks have committed, it is rebuilt the way an assignment builds
  it (a new producer aborts the open transaction, the state is reloaded, the inputs re-read), again after a pause
  until the broker answers, or let go if the partition moved. A record whose handling raised (a bug) breaks its
  task too, and is dead-lettered instead of handled when read again: one poison record never stops a partition,
  nor the group as it moves from worker to worker (a record of parts, such as the router's batch of hops, whose
  processor raised ``PartFailed``: read again without the part that raised, which alone is dead-lettered). A
  fenced producer means another worker owns p now: the driver stops with that error, as faust does, and the worker
  is restarted.
- **Timers.** ``punctuate`` runs every ``punctuate_s`` for each task, inside its transaction, like any input.
- **Snapshots** (given a SnapshotPolicy): every ``interval_s``, right after a commit, each task's tables are
  copied as committed and written off the event loop to one local file per changelog partition
  (shared/streaming/snapshots.py), with the changelog's last stable offset read at that moment (never above
  what the copy holds); a task built later loads its snapshot and reads its changelog only from there, as Kafka
  Streams does with its local store and checkpoint file.

The decisions (which partition, what to commit, names) are the pure functions here; ``TransactionalDriver`` is
the shell, and the processor's own decisions are the service's pure steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.partitioner import DefaultPartitioner

from shared.infra.logging import get_logger
from shared.streaming.codec import encode
from shared.streaming.deadletters import dead_letter_of
from shared.streaming.driver import Record, commit_due, commit_offsets, group_consumer, records_of
from shared.streaming.snapshots import SnapshotDir, SnapshotError, SnapshotPolicy, load_snapshot, write_snapshot
from shared.streaming.stopping import cancelled_from_inside, stop_consumer
from shared.streaming.stream_metrics import ReasonKind, StreamMetrics
from shared.streaming.topics import TopicSpec, ensure_topics, partition_of

log = get_logger(__name__)

FETCH_MAX_BYTES = 64 * 1024 * 1024
PARTITION_FETCH_BYTES = 16 * 1024 * 1024
RETRY_MAX_S = 5.0
ABORT_TIMEOUT_S = 5.0
POISON_MAX = 10_000  # records remembered as poison (a bug's count; forgotten all at once past this)
OFFSETS = "_offsets"  # the driver's own table: input topic -> the next offset to read, per task
KNOWN_KEYS_MAX = 100_000  # keys whose partition is remembered (forgotten all at once past this)
BATCH_BYTES_MAX = 256 * 1024
"""A record of ``Task.send_batched`` items is let go once it holds this much (a quarter of Kafka's default
message size limit)."""
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Send:
    """A record to publish in the task's transaction (``partition`` None: the key's partition)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    partition: int | None = None


def changelog_topic(group_id: str, table: str) -> str:
    """A table's changelog: faust's name for it, so the state faust kept is read as it was."""
    return f"{group_id}-{table}-changelog"


def transactional_id(group_id: str, partition: int) -> str:
    return f"{group_id}-tx-{partition}"


class PartFailed(Exception):  # noqa: N818 - what happened, as the driver hears it
    """Raised by a processor (from the error it hit) when handling one part of a record (an item of a batch)
    raised and it has remembered which part: the task breaks as for any failure (the transaction aborted, the
    part's half-made changes with it), but the record is not poison: it is handled again after the rebuild, the
    processor dead-lettering that part alone and handling the others, so one bad part never takes the record's
    other parts with it. Each time, one more part is remembered: a record comes back at most once a part."""


class PartitionCountError(RuntimeError):
    """A source topic's partition count is not the configured one: the service does not start."""


def miscounted(partitions: dict[str, set[int] | None], expected: int) -> dict[str, int]:
    """The source topics whose partition count (known from the cluster's metadata; None: not known) is not the
    configured one."""
    return {t: len(ps) for t, ps in partitions.items() if ps is not None and len(ps) != expected}


def by_partition(records: Iterable[Record]) -> dict[int, list[Record]]:
    """Records grouped by partition number (a task's inputs), each topic's in offset order."""
    out: dict[int, list[Record]] = {}
    for r in records:
        out.setdefault(r.partition, []).append(r)
    return out


def destinations(
    queued: Iterable[Send], partitions: dict[str, list[int]], known: dict[tuple[str, bytes | None], int]
) -> dict[tuple[str, int], list[Send]]:
    """The queued records by destination partition, in order: an explicit partition, else the key's, as the
    Java client and aiokafka's default partitioner pick it (murmur2 of the key over all the topic's
    partitions), so a record lands where a plain send would put it. ``known`` remembers a key's partition
    (murmur2 is pure Python in aiokafka: 5% of the router's time in a storm, where a few keys repeat)."""
    out: dict[tuple[str, int], list[Send]] = {}
    for s in queued:
        p = s.partition
        if p is None:
            p = known.get((s.topic, s.key))
            if p is None:
                every = partitions[s.topic]
                p = known[(s.topic, s.key)] = (
                    every[partition_of(s.key, len(every))]
                    if s.key is not None
                    else DefaultPartitioner()(None, every, every)
                )
        out.setdefault((s.topic, p), []).append(s)
    return out


class Polled(NamedTuple):
    """One ``getmany``'s records and the tasks' epochs the moment it returned."""

    records: dict[Any, Any]
    epochs: dict[int, int]


def split_by_topic(
    assigned: Iterable[TopicPartition], first: Iterable[str]
) -> tuple[list[TopicPartition], list[TopicPartition]]:
    """The assigned partitions of the ``first`` topics, and the rest (both in a stable order)."""
    wanted = set(first)
    ordered = sorted(assigned, key=lambda tp: (tp.topic, tp.partition))
    return [tp for tp in ordered if tp.topic in wanted], [tp for tp in ordered if tp.topic not in wanted]


def task_partitions(assigned: Iterable[tuple[str, int]], topics: Iterable[str]) -> set[int]:
    """The partition numbers of which this member holds every source topic (a task needs all of them: the range
    assignor gives them together when the topics are co-partitioned)."""
    held: dict[int, set[str]] = {}
    for topic, p in assigned:
        held.setdefault(p, set()).add(topic)
    wanted = set(topics)
    return {p for p, names in held.items() if names >= wanted}


class Task:
    """The work of one partition number: its tables and what is queued for its open transaction.

    The processor emits with ``send`` and keeps state in two ways, one per table:

    - bytes, with ``get``/``items``/``put``/``delete``: each change queued for the table's changelog (partition
      p) at once;
    - objects, with ``load``/``store``/``remove`` (Kafka Streams' record cache): a value is decoded once and kept
      decoded until the transaction commits, and each changed key is encoded and written to the changelog once,
      at the commit, however often it changed (a storm's ticket changes hundreds of times a second).

    Both ways see one table: reading a key as bytes writes its pending ``store`` first, and writing it as bytes
    overtakes a pending ``store`` and drops its decoded value.

    The driver publishes what was queued and flushes the cache before each commit."""

    def __init__(self, partition: int, changelogs: dict[str, str]) -> None:
        self.partition = partition
        self.changelogs = changelogs
        self.tables: dict[str, dict[bytes, bytes]] = {name: {} for name in changelogs}
        self.queued: list[Send] = []
        self.offsets: dict[tuple[str, int], int] = {}
        """Input offsets handled in the open transaction (the next to read, per source partition)."""
        self.producer: AIOKafkaProducer | None = None
        self.epoch = 0
        """Counts the task's (re)builds: records polled before the last one are stale (its inputs were moved)."""
        self.in_transaction = False
        self.sent: list[asyncio.Future[Any]] = []
        self.cache: dict[str, dict[bytes, Any]] = {name: {} for name in changelogs}
        self.dirty: dict[str, dict[bytes, Callable[[Any], bytes] | None]] = {name: {} for name in changelogs}
        self.held: dict[tuple[str, bytes], Held] = {}
        """Records sent with ``send_folded``, not yet queued."""
        self.batches: dict[tuple[str, int], Batch] = {}
        """Items sent with ``send_batched``, not yet queued, by destination partition."""
        self.dead_lettered: list[ReasonKind] = []
        """The kinds of the dead letters sent in the open transaction: counted once it commits."""

    def get(self, table: str, key: bytes) -> bytes | None:
        self._settle(table, key)
        return self.tables[table].get(key)

    def items(self, table: str) -> list[tuple[bytes, bytes]]:
        for key in list(self.dirty[table]):
            self._settle(table, key)
        return list(self.tables[table].items())

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self._forget(table, key)
        self.tables[table][key] = value
        self.queued.append(Send(self.changelogs[table], key, value, [], self.partition))

    def delete(self, table: str, key: bytes) -> None:
        self._forget(table, key)
        if self.tables[table].pop(key, None) is not None:
            self.queued.append(Send(self.changelogs[table], key, None, [], self.partition))

    def _settle(self, table: str, key: bytes) -> None:
        """A key changed through ``store``/``remove`` and read as bytes: its change is written now, so both
        ways of using a table see the same value (and the later change wins)."""
        dirty = self.dirty[table]
        if key not in dirty:
            return
        encoder = dirty.pop(key)
        data, topic = self.tables[table], self.changelogs[table]
        if encoder is None:
            if data.pop(key, None) is not None:
                self.queued.append(Send(topic, key, None, [], self.partition))
        else:
            raw = data[key] = encoder(self.cache[table][key])
            self.queued.append(Send(topic, key, raw, [], self.partition))

    def _forget(self, table: str, key: bytes) -> None:
        """A key written as bytes: a pending ``store``/``remove`` of it is overtaken, a decoded value is stale."""
        self.dirty[table].pop(key, None)
        self.cache[table].pop(key, None)

    def load(self, table: str, key: bytes, decode: Callable[[bytes], T]) -> T | None:
        """The key's value, decoded once per transaction (None: no value)."""
        cache = self.cache[table]
        if key in cache:
            return cache[key]  # type: ignore[no-any-return]
        raw = self.tables[table].get(key)
        value = decode(raw) if raw is not None else None
        cache[key] = value
        return value

    def store(self, table: str, key: bytes, value: T, encode: Callable[[T], bytes]) -> None:
        """Set the key's value; encoded and written to the changelog at the commit."""
        self.cache[table][key] = value
        self.dirty[table][key] = encode

    def remove(self, table: str, key: bytes) -> None:
        self.cache[table][key] = None
        self.dirty[table][key] = None

    def flush(self) -> None:
        """Encode each key changed through ``store``/``remove`` since the last flush, once, into the table and
        the changelog queue, and queue each record held by ``send_folded`` and each batch of ``send_batched``;
        the decoded values are let go (the cache lives one transaction)."""
        for where in list(self.held):
            self._release(where)
        for place in list(self.batches):
            self._release_batch(place)
        for table, dirty in self.dirty.items():
            for key in list(dirty):
                self._settle(table, key)
        for cache in self.cache.values():
            cache.clear()

    def dead_letter(self, topic: str, service: str, record: Record, reason: str, kind: ReasonKind) -> None:
        """Send ``record`` to the dead-letter ``topic`` with the reason, in this transaction (keyed by the topic
        it came from), and say so in a warning line; ``kind`` is what the dead-letter count is labelled with."""
        r = record
        dead = dead_letter_of(service, r.topic, r.partition, r.offset, r.key, r.value, reason)
        self.send(topic, r.topic.encode(), encode(dead))
        self.dead_lettered.append(kind)

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        if self.held and key is not None and (topic, key) in self.held:
            self._release((topic, key))  # what was held for this key goes first: a key's records keep their order
        if self.batches:
            for place in [b for b in self.batches if b[0] == topic]:
                self._release_batch(place)  # and what was batched for the topic: a topic's records keep theirs
        self.queued.append(Send(topic, key, value, headers or []))

    def send_batched(self, topic: str, partition: int, key: bytes, item: bytes) -> None:
        """Send ``item`` (one JSON value) in a record that carries, as one JSON array, the items sent this way
        to the same topic and partition in the transaction, in order, until the record holds
        ``BATCH_BYTES_MAX`` (a record costs a client ~50 µs to produce and read back; an item a few bytes more).
        The record is keyed by its first item's ``key`` and goes to ``partition``, where every item's key
        belongs (the caller's word: the partition its key would pick)."""
        place = (topic, partition)
        batch = self.batches.get(place)
        if batch is not None and batch.size + len(item) > BATCH_BYTES_MAX:
            self._release_batch(place)
            batch = None
        if batch is None:
            batch = self.batches[place] = Batch(key)
        batch.items.append(item)
        batch.size += len(item) + 1

    def _release_batch(self, place: tuple[str, int]) -> None:
        batch = self.batches.pop(place)
        self.queued.append(Send(place[0], batch.key, b"[" + b",".join(batch.items) + b"]", [], place[1]))

    def send_folded(self, topic: str, key: bytes, value: T, fold: Callable[[T, T], T], encode: Encoder[T]) -> None:
        """Send a record that the next one sent this way for the same topic and key may fold into (Kafka Streams'
        record cache on a table's updates): held decoded until the commit, or until a plain ``send`` for the same
        topic and key, then encoded once and queued. ``fold(held, value)`` is what goes out instead of both."""
        where = (topic, key)
        held = self.held.get(where)
        if held is not None and held.fold == fold:
            self.held[where] = Held(fold(held.value, value), fold, encode)
            return
        if held is not None:
            self._release(where)
        self.held[where] = Held(value, fold, encode)

    def _release(self, where: tuple[str, bytes]) -> None:
        held = self.held.pop(where)
        value, headers = held.encode(held.value)
        self.queued.append(Send(where[0], where[1], value, headers))


Encoder = Callable[[T], tuple[bytes, list[tuple[str, bytes]]]]
"""A held record's value and headers, as sent."""


@dataclass(slots=True)
class Batch:
    """The items of one record of ``Task.send_batched``, so far: its key, the items' JSON, their size."""

    key: bytes
    items: list[bytes] = field(default_factory=list)
    size: int = 2


@dataclass(frozen=True, slots=True)
class Held:
    """A record held by ``Task.send_folded``: its value as folded so far, how to fold and how to encode it."""

    value: Any
    fold: Callable[[Any, Any], Any]
    encode: Callable[[Any], tuple[bytes, list[tuple[str, bytes]]]]


class Processor(Protocol):
    """What a service does with its inputs: plain calls on a task, no I/O (the driver does that)."""

    tables: tuple[str, ...]

    def process(self, task: Task, records: list[Record]) -> None: ...

    def punctuate(self, task: Task, now: float) -> None: ...


@dataclass(frozen=True)
class TxConfig:
    bootstrap: str
    group_id: str
    """The consumer group, and the prefix of the changelogs and transactional ids."""
    topics: tuple[str, ...]
    partitions: int
    """The source topics' partition count (the changelogs get as many)."""
    max_records: int = 1000
    poll_ms: int = 50
    commit_interval_s: float = 0.1
    """Each task commits its transaction at most this often (Kafka Streams' default under exactly-once): the
    longest a record waits after it was handled before readers see its outputs."""
    punctuate_s: float = 1.0
    service: str = "service"
    """Named in dead letters."""
    deadletter_topic: str | None = None
    """Where a record whose handling raised goes (None: it is logged and skipped)."""
    priority_topics: tuple[str, ...] = ()
    """Read before the others in each round (the service's own hops: their records are not queued behind a
    backlog of new input)."""
    session_timeout_s: float = 10.0
    heartbeat_interval_s: float = 1.0
    group_instance_id: str | None = None
    transaction_timeout_s: float = 60.0
    snapshots: SnapshotPolicy | None = None
    """Local snapshots of the tables (None: a task always reads its changelogs from the start)."""


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, driver: TransactionalDriver) -> None:
        self.driver = driver

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        async with self.driver.lock:
            await self.driver.revoke({(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        async with self.driver.lock:
            await self.driver.assign({(tp.topic, tp.partition) for tp in assigned})


class TransactionalDriver:
    """Run ``processor`` on ``config.topics`` as a member of ``config.group_id``, exactly once, until ``stop``."""

    def __init__(
        self,
        config: TxConfig,
        processor: Processor,
        on_loaded: Callable[[Task], Awaitable[None]] | None = None,
        metrics: StreamMetrics | None = None,
    ) -> None:
        self.config = config
        self.processor = processor
        self.on_loaded = on_loaded
        self.metrics = metrics
        """Where the consumer's lag (after each poll) and the committed dead letters are counted (None: nowhere)."""
        self.changelogs = {name: changelog_topic(config.group_id, name) for name in (*processor.tables, OFFSETS)}
        self.tasks: dict[int, Task] = {}
        self.broken: set[int] = set()
        self.held: dict[tuple[str, int], int] = {}
        """Per source partition, the first record dropped to be read again (a task broken, not built, or rebuilt
        since the poll) and not handled since: where its consumer lag counts from (the position is past it)."""
        self.lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None
        self.committed_at = 0.0
        self.punctuated_at = 0.0
        self.fatal: BaseException | None = None
        self.rebuild_after = 0.0
        self.builds = 0
        """Tasks built so far: each build's epoch."""
        self.poison: dict[tuple[str, int, int], str] = {}
        """Records whose handling raised, and why: dead-lettered when read again."""
        self.partitions: dict[str, list[int]] = {}
        """Each destination topic's partitions (partition counts do not change under a running worker)."""
        self.known: dict[tuple[str, bytes | None], int] = {}
        self.snapshot_dir: SnapshotDir | None = None
        """Locked while the driver runs, when the config asks for snapshots and the directory could be locked."""
        self.snapshot_due = 0.0
        self.snapshotting: asyncio.Future[None] | None = None

    # -- the loop ----------------------------------------------------------------------------------------------

    def changelog_specs(self) -> list[TopicSpec]:
        """The changelog topics (compacted) of the processor's tables and of the driver's own."""
        return [
            TopicSpec(topic, self.config.partitions, "table key", f"changelog of the {name} table", compacted=True)
            for name, topic in self.changelogs.items()
        ]

    async def run(self, stop: asyncio.Event) -> None:
        c = self.config
        await ensure_topics(c.bootstrap, self.changelog_specs())
        consumer = self.consumer = group_consumer(
            c.bootstrap,
            c.group_id,
            c.group_instance_id,
            c.session_timeout_s,
            c.heartbeat_interval_s,
            c.poll_ms,
            c.max_records,
            # partition p of every input to one member: the range assignor, with co-partitioned inputs
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        self._lock_snapshots()
        consumer.subscribe(list(c.topics), listener=_Listener(self))
        await consumer.start()
        try:
            await consumer.topics()  # the cluster's metadata, for every topic
            wrong = miscounted({t: consumer.partitions_for_topic(t) for t in c.topics}, c.partitions)
            if wrong:
                raise PartitionCountError(
                    "; ".join(f"topic {t} has {n} partitions" for t, n in sorted(wrong.items()))
                    + f", the service is configured for {c.partitions} (TICKETLOOP_PARTITIONS): the source topics"
                    " must share that count (a task is partition p of each, and where records land rests on it)"
                )
            while not stop.is_set() and self.fatal is None:
                rounds = await self.poll(consumer)
                if self.metrics is not None:
                    self.metrics.observe_lag(c.group_id, consumer, self.held)
                async with self.lock:
                    await self.step(rounds)
            async with self.lock:
                if self.fatal is None:
                    await self.commit_all()
        finally:
            if self.metrics is not None:
                self.metrics.lag.forget(c.group_id)
            await self._close_all()
            await stop_consumer(consumer)
            await self._stop_snapshots()
        if self.fatal is not None:
            raise self.fatal

    async def poll(self, consumer: AIOKafkaConsumer) -> list[Polled]:
        """What the consumer has: the priority topics' records first (a hop's records are not queued behind a
        backlog of new input: in an alert storm the router opened tickets seconds late), then the others, each
        poll with the tasks' epochs as they were the moment it returned (nothing can run between the two: a
        rebalance or a rebuild later moves the task's inputs, and its records in hand are dropped and read again)."""
        c = self.config
        if not c.priority_topics:
            polled = await consumer.getmany(timeout_ms=c.poll_ms, max_records=c.max_records)
            return [Polled(polled, self.epochs())]
        first, rest = split_by_topic(consumer.assignment(), c.priority_topics)
        out: list[Polled] = []
        got = 0
        if first:
            polled = await consumer.getmany(*first, timeout_ms=0, max_records=c.max_records)
            out.append(Polled(polled, self.epochs()))
            got = sum(len(records) for records in polled.values())
        if rest and got < c.max_records:
            polled = await consumer.getmany(*rest, timeout_ms=0 if got else c.poll_ms, max_records=c.max_records - got)
            out.append(Polled(polled, self.epochs()))
        if not first and not rest:  # nothing assigned (a rebalance under way): wait as a poll would
            await asyncio.sleep(c.poll_ms / 1000)
        return out

    def epochs(self) -> dict[int, int]:
        return {p: t.epoch for p, t in self.tasks.items()}

    async def step(self, rounds: list[Polled]) -> None:
        """One round: rebuild broken tasks, handle what was polled for the tasks as they were when it was polled,
        punctuate when due, commit when due."""
        now = time.monotonic()
        for polled, epochs in rounds:
            for p, records in by_partition(records_of(polled)).items():
                task = self.tasks.get(p)
                if task is None or p in self.broken or task.epoch != epochs.get(p):
                    for r in records:  # not ours (any more), being rebuilt, or rebuilt since the poll: read again
                        self.held.setdefault((r.topic, r.partition), r.offset)
                    continue
                await self._begin(task)
                handled = self._handle(task, records)
                done = commit_offsets(handled)
                task.offsets.update(done)
                for tp in done:
                    self.held.pop(tp, None)
                await self._publish(task)
        if now - self.punctuated_at >= self.config.punctuate_s:
            self.punctuated_at = now
            wall = time.time()
            for task in list(self.tasks.values()):
                if task.partition in self.broken:
                    continue
                try:
                    self.processor.punctuate(task, wall)
                except Exception as exc:  # noqa: BLE001 - a bug: what the timer changed goes with the transaction
                    log.error("punctuate_failed", partition=task.partition, error=type(exc).__name__)  # noqa: TRY400
                    self._broke(task, exc)
                    continue
                if task.queued or task.held or task.batches or any(task.dirty.values()):  # a timer that did something
                    await self._begin(task)
                    await self._publish(task)
        busy = any(polled for polled, _ in rounds)
        if commit_due(busy, self.committed_at, now, self.config.commit_interval_s):
            await self.commit_all()
            await self._snapshot_if_due(now)
        if self.broken and now >= self.rebuild_after:  # after the healthy tasks committed, never before
            await self._rebuild_broken()

    def _handle(self, task: Task, records: list[Record]) -> list[Record]:
        """The records handled, one by one. A record whose handling raised (a bug, not bad input: the processor
        dead-letters what it cannot decode) breaks the task, whose half-made changes go with its transaction; it
        is remembered, and when the rebuilt task reads it again it is dead-lettered instead of handled, so one
        poison record never stops a partition or, moving from worker to worker, the group. A record of parts (a
        batch) whose processor raised ``PartFailed`` is not poison: read again, the processor does without the
        part that failed."""
        done: list[Record] = []
        for r in records:
            where = (r.topic, r.partition, r.offset)
            if where in self.poison:  # kept: the transaction with its dead letter may be aborted too
                self._dead_letter(task, r, self.poison.get(where, "its handling failed"))
                done.append(r)
                continue
            try:
                self.processor.process(task, [r])
            except Exception as exc:  # noqa: BLE001 - see the docstring
                part = isinstance(exc, PartFailed)
                error = type(exc.__cause__ if part and exc.__cause__ is not None else exc).__name__
                log.error(  # noqa: TRY400 - the type only: a traceback's text can carry the record's values
                    "record_part_failed" if part else "record_handling_failed",
                    topic=r.topic,
                    partition=r.partition,
                    offset=r.offset,
                    error=error,
                )
                if not part:  # a part that failed: the processor remembers it, and the record is handled again
                    if len(self.poison) >= POISON_MAX:
                        self.poison.clear()
                    self.poison[where] = f"handling failed: {error}"
                self._broke(task, exc)
                return done
            done.append(r)
        return done

    def _dead_letter(self, task: Task, record: Record, reason: str) -> None:
        c = self.config
        if c.deadletter_topic is None:
            log.error("record_skipped", topic=record.topic, partition=record.partition, offset=record.offset)
            return
        task.dead_letter(c.deadletter_topic, c.service, record, reason, "handling_failed")

    async def _begin(self, task: Task) -> None:
        if not task.in_transaction and task.producer is not None:
            await task.producer.begin_transaction()
            task.in_transaction = True

    async def _publish(self, task: Task) -> None:
        """Send what the task queued, as one record batch per destination partition (aiokafka's batch API:
        one future a batch instead of one a record, a quarter of the producer's cost per record here)."""
        queued, task.queued = task.queued, []
        producer = task.producer
        if producer is None or not queued:
            return
        try:
            for topic in {s.topic for s in queued if s.partition is None} - self.partitions.keys():
                self.partitions[topic] = sorted(await producer.partitions_for(topic))
            if len(self.known) > KNOWN_KEYS_MAX:
                self.known.clear()
            for (topic, partition), sends in destinations(queued, self.partitions, self.known).items():
                batch = producer.create_batch()
                for s in sends:
                    if batch.append(key=s.key, value=s.value, timestamp=None, headers=s.headers) is None:
                        task.sent.append(await producer.send_batch(batch, topic, partition=partition))
                        batch = producer.create_batch()
                        batch.append(key=s.key, value=s.value, timestamp=None, headers=s.headers)
                task.sent.append(await producer.send_batch(batch, topic, partition=partition))
        except ProducerFenced as exc:
            self.fatal = exc
        except Exception as exc:  # noqa: BLE001 - KafkaError, or aiokafka's IllegalOperation/AssertionError after one
            self._broke(task, exc)

    # -- commits -----------------------------------------------------------------------------------------------

    async def commit_all(self) -> None:
        self.committed_at = time.monotonic()
        work = [t for t in self.tasks.values() if t.in_transaction and t.partition not in self.broken]
        if work:
            await asyncio.gather(*(self._commit(t) for t in work))

    async def _commit(self, task: Task) -> None:
        producer = task.producer
        if producer is None:
            return
        for (topic, _), offset in task.offsets.items():  # where the task's inputs stand, with its state
            task.put(OFFSETS, topic.encode(), str(offset).encode())
        task.flush()
        await self._publish(task)
        if task.partition in self.broken or self.fatal is not None:
            return
        try:
            sent, task.sent = task.sent, []
            if sent:
                await asyncio.gather(*sent)
            if task.offsets:
                offsets = {TopicPartition(t, p): o for (t, p), o in task.offsets.items()}
                await producer.send_offsets_to_transaction(offsets, self.config.group_id)
            await producer.commit_transaction()
            task.in_transaction = False
            task.offsets = {}
            dead, task.dead_lettered = task.dead_lettered, []
            if self.metrics is not None:
                for kind in dead:  # counted once committed: an aborted transaction's dead letters were never sent
                    self.metrics.dead_lettered(kind)
        except ProducerFenced as exc:
            log.error("producer_fenced", partition=task.partition)  # noqa: TRY400 - stopping with it
            self.fatal = exc
        except Exception as exc:  # noqa: BLE001 - KafkaError, or aiokafka's IllegalOperation/AssertionError after one
            self._broke(task, exc)

    def _broke(self, task: Task, exc: BaseException) -> None:
        log.warning("transaction_failed_rebuilding_task", partition=task.partition, error=type(exc).__name__)
        self.broken.add(task.partition)

    async def _rebuild_broken(self) -> None:
        """Rebuild each broken task as an assignment would, if its partition is still ours (else let it go); a
        task that cannot be rebuilt yet stays broken and the loop comes back to it after a pause, without
        holding anything up meanwhile."""
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()} if self.consumer else set()
        held = task_partitions(assigned, self.config.topics)
        for p in sorted(self.broken):
            task = self.tasks.get(p)
            if task is None or p not in held:
                self.broken.discard(p)
                if task is not None:
                    del self.tasks[p]
                    await self._close(task)
                continue
            await self._close(task)
            if await self._try_open(task):
                self.broken.discard(p)
                log.info("task_rebuilt", partition=p)
            elif self.fatal is not None:
                return
        if self.broken:
            self.rebuild_after = time.monotonic() + min(RETRY_MAX_S, self.config.commit_interval_s * 10)

    # -- assignment --------------------------------------------------------------------------------------------

    async def revoke(self, revoked: set[tuple[str, int]]) -> None:
        """Commit what was handled, then let go of the tasks of the revoked partitions."""
        gone = {p for _, p in revoked}
        for tp in revoked:
            self.held.pop(tp, None)
        try:
            if self.fatal is None:
                await self.commit_all()
        finally:
            for p in sorted(gone):
                task = self.tasks.pop(p, None)
                self.broken.discard(p)
                if task is not None:
                    await self._close(task)

    async def assign(self, assigned: set[tuple[str, int]]) -> None:
        """Build a task for each partition number held with all its source topics."""
        for p in sorted(task_partitions(assigned, self.config.topics) - set(self.tasks)):
            task = Task(p, self.changelogs)
            self.tasks[p] = task
            self.broken.add(p)  # until it is open: its records are not handled on half-built state
            if await self._try_open(task):
                self.broken.discard(p)
            elif self.fatal is not None:
                return

    async def _try_open(self, task: Task) -> bool:
        """Open the task; False (and the reason logged, or ``fatal`` set when fenced) if that failed."""
        try:
            await self._open(task)
        except ProducerFenced as exc:
            self.fatal = exc
            return False
        except Exception as exc:  # noqa: BLE001 - the broker away, or a bad stored value: built again later
            log.warning("task_open_failed", partition=task.partition, error=type(exc).__name__)
            return False
        except asyncio.CancelledError:
            # one of aiokafka's own cancellations (an assignment's open runs in the group's coordination task,
            # which such an error would end, and the worker with it): built again later, as for any failure
            if not cancelled_from_inside(asyncio.current_task()):
                raise
            log.warning("task_open_failed", partition=task.partition, error="CancelledError")
            return False
        return True

    async def _open(self, task: Task) -> None:
        """Start the task's producer (fencing its predecessor), load its tables, move its inputs to the
        committed offsets."""
        c = self.config
        producer = AIOKafkaProducer(
            bootstrap_servers=c.bootstrap,
            transactional_id=transactional_id(c.group_id, task.partition),
            transaction_timeout_ms=int(c.transaction_timeout_s * 1000),
            enable_idempotence=True,
            acks="all",
            linger_ms=2,
            max_batch_size=256 * 1024,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        task.producer = producer
        task.in_transaction, task.sent, task.queued, task.offsets = False, [], [], {}
        task.dead_lettered = []
        started = time.monotonic()
        snapshots = (self.snapshot_dir, c.snapshots) if self.snapshot_dir and c.snapshots else None
        task.tables = await load_tables(c.bootstrap, self.changelogs, task.partition, snapshots)
        await self._seek_committed(task)
        if self.on_loaded is not None:
            await self.on_loaded(task)
        log.info(
            "task_ready",
            partition=task.partition,
            keys={name: len(data) for name, data in task.tables.items()},
            seconds=round(time.monotonic() - started, 3),
        )

    async def _seek_committed(self, task: Task) -> None:
        """Move the task's inputs to where its state stands: the offsets its last committed transaction wrote
        with its state (the ``_offsets`` table), else the group's committed offset (a group that began before
        the table did), else the beginning.

        The group's offsets alone are not enough: the broker makes offsets committed in a transaction visible
        to a fetch only some time after the commit (Kafka's answer, KIP-447's stable offset fetch, is not in
        aiokafka), and a rebuilt task that read them at once counted again records it had just committed (seen
        in this driver's restart test, 20 of 90). The changelog is read up to its last stable offset, which moves
        with the commit's marker on that very partition."""
        consumer = self.consumer
        if consumer is None:
            return
        stored = task.tables[OFFSETS]
        targets: dict[TopicPartition, int | None] = {}
        for topic in self.config.topics:
            tp = TopicPartition(topic, task.partition)
            if tp in consumer.assignment():
                raw = stored.get(topic.encode())
                targets[tp] = int(raw) if raw is not None else await consumer.committed(tp)
        unknown = [tp for tp, offset in targets.items() if offset is None]
        firsts: dict[TopicPartition, int] = await consumer.beginning_offsets(unknown) if unknown else {}
        # From here to the epoch's change nothing awaits: a poll that returned before it holds records fetched
        # from the old positions (the loop drops them: they are read again from here), one after it, records
        # from these.
        for tp, offset in targets.items():
            consumer.seek(tp, offset if offset is not None else firsts[tp])
        self.builds += 1
        task.epoch = self.builds  # unique in this driver, across the Task objects a partition has had

    async def _close(self, task: Task) -> None:
        """Let go of the task: its open transaction aborted (readers of its partitions wait for nothing; bounded,
        the next owner's start aborts it anyway), its producer stopped, its state dropped."""
        producer, task.producer = task.producer, None
        if producer is not None and task.in_transaction:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.abort_transaction(), ABORT_TIMEOUT_S)
        task.in_transaction, task.sent, task.queued, task.offsets = False, [], [], {}
        task.dead_lettered = []
        task.tables = {name: {} for name in self.changelogs}
        task.cache = {name: {} for name in self.changelogs}
        task.dirty = {name: {} for name in self.changelogs}
        task.held, task.batches = {}, {}
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), ABORT_TIMEOUT_S)
            except (KafkaError, TimeoutError) as exc:  # what it left open is aborted by the next owner's start
                log.warning("producer_stop_failed", partition=task.partition, error=type(exc).__name__)

    async def _close_all(self) -> None:
        for task in list(self.tasks.values()):
            await self._close(task)
        self.tasks.clear()

    # -- snapshots ---------------------------------------------------------------------------------------------

    def _lock_snapshots(self) -> None:
        policy = self.config.snapshots
        if policy is None:
            return
        snapshots = SnapshotDir(policy.directory)
        try:
            snapshots.lock()
        except (SnapshotError, OSError) as exc:  # the worker runs on, reading whole changelogs
            log.error("snapshots_off", reason=str(exc))  # noqa: TRY400 - the reason says it all
            return
        self.snapshot_dir = snapshots
        self.snapshot_due = time.monotonic() + policy.interval_s

    async def _snapshot_if_due(self, now: float) -> None:
        """Right after a commit (under the loop's lock, nothing open): copy each committed task's tables and
        write them off the loop. The offset stored is the changelog's last stable offset read now, which the
        copy holds everything below (the task is the partition's only writer and has nothing open); a lower
        one would only make a restart re-read values it holds."""
        policy, snapshots, consumer = self.config.snapshots, self.snapshot_dir, self.consumer
        if policy is None or snapshots is None or consumer is None or now < self.snapshot_due:
            return
        if self.snapshotting is not None and not self.snapshotting.done():
            return
        ready = [t for t in self.tasks.values() if not t.in_transaction and t.partition not in self.broken]
        if not ready:
            return
        self.snapshot_due = now + policy.interval_s
        parts = {
            TopicPartition(topic, t.partition): (t, name) for t in ready for name, topic in self.changelogs.items()
        }
        try:
            ends: dict[TopicPartition, int] = await consumer.end_offsets(list(parts))
        except KafkaError as exc:
            log.warning("snapshot_skipped", error=type(exc).__name__)
            return
        copies = [(tp.topic, tp.partition, ends[tp], dict(t.tables[name])) for tp, (t, name) in parts.items()]
        self.snapshotting = asyncio.ensure_future(self._write_snapshots(snapshots, copies, policy.chunk_pairs))

    async def _write_snapshots(
        self, snapshots: SnapshotDir, copies: list[tuple[str, int, int, dict[bytes, bytes]]], chunk_pairs: int
    ) -> None:
        started = time.monotonic()

        def write_all() -> None:
            for topic, partition, offset, data in copies:
                write_snapshot(snapshots, topic, partition, offset, data, chunk_pairs)

        try:
            await asyncio.to_thread(write_all)
        except OSError as exc:  # a full or broken disk: the worker goes on; the next snapshot tries again
            log.error("snapshot_failed", error=str(exc))  # noqa: TRY400 - the reason says it all
            return
        log.info(
            "snapshot_written",
            partitions=len(copies),
            keys=sum(len(data) for *_, data in copies),
            seconds=round(time.monotonic() - started, 3),
        )

    async def _stop_snapshots(self) -> None:
        """Wait for a snapshot being written (bounded: a slow disk must not hold the stop), then unlock."""
        if self.snapshotting is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self.snapshotting), ABORT_TIMEOUT_S)
        if self.snapshot_dir is not None:
            self.snapshot_dir.release()
            self.snapshot_dir = None


def changelog_reader(bootstrap: str) -> AIOKafkaConsumer:
    """A plain consumer (no group) that reads changelogs in large fetches, committed records only."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        fetch_max_bytes=FETCH_MAX_BYTES,
        max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
    )


async def load_tables(
    bootstrap: str,
    changelogs: dict[str, str],
    partition: int,
    snapshots: tuple[SnapshotDir, SnapshotPolicy] | None = None,
) -> dict[str, dict[bytes, bytes]]:
    """Partition ``partition`` of each table's changelog, read committed up to its last stable offset: from the
    start, or from a usable local snapshot's offset after loading the snapshot."""
    tables: dict[str, dict[bytes, bytes]] = {name: {} for name in changelogs}
    if not changelogs:
        return tables
    consumer = changelog_reader(bootstrap)
    await consumer.start()
    # no cycle collection while loading: the records are bytes, which the collector never tracks, and each
    # fetch makes many short-lived objects (shared/streaming/tables.py measured this on a million records)
    collecting = gc.isenabled()
    gc.disable()
    try:
        parts = {TopicPartition(topic, partition): name for name, topic in changelogs.items()}
        consumer.assign(list(parts))
        await consumer.seek_to_beginning(*parts)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(list(parts))
        starts = dict.fromkeys(parts, 0)
        if snapshots is not None:
            firsts: dict[TopicPartition, int] = await consumer.beginning_offsets(list(parts))
            for tp, name in parts.items():
                try:
                    found = await asyncio.to_thread(
                        load_snapshot, *snapshots, tp.topic, tp.partition, firsts[tp], ends[tp]
                    )
                except SnapshotError as exc:
                    log.warning("snapshot_unusable", table=name, partition=partition, error=str(exc))
                    continue
                if found is None:
                    continue
                tables[name], starts[tp] = found
                consumer.seek(tp, starts[tp])
                log.info("snapshot_loaded", table=name, partition=partition, offset=starts[tp], keys=len(tables[name]))
        left = {tp for tp in parts if ends[tp] > starts[tp]}
        await read_to_end(consumer, left, ends, lambda tp: tables[parts[tp]])
    finally:
        if collecting:
            gc.enable()
        await stop_consumer(consumer)
    return tables


async def read_to_end(
    consumer: AIOKafkaConsumer,
    left: set[TopicPartition],
    ends: dict[TopicPartition, int],
    data_of: Callable[[TopicPartition], dict[bytes, bytes]],
) -> int:
    """Apply the records of ``left`` from the consumer's positions up to ``ends`` to ``data_of(tp)`` (a
    tombstone deletes); how many records were read."""
    records = 0
    while left:
        batch = await consumer.getmany(*left, timeout_ms=1000, max_records=100_000)
        for tp, messages in batch.items():
            data, end = data_of(tp), ends[tp]
            for m in messages:
                if m.offset >= end:
                    break
                if m.value is None:
                    data.pop(m.key, None)
                else:
                    data[m.key] = m.value
            records += len(messages)
        for tp in list(left):
            if await consumer.position(tp) >= ends[tp]:
                left.discard(tp)
    return records
