"""An in-memory, changelog-backed faust table whose recovery reads the changelog with a plain consumer.

faust recovers an in-memory table by running every changelog record through its stream machinery (an Event per
record, recovery buffers, per-record bookkeeping): measured on an sla worker holding 200,000 clocks, 38 s for
213,736 records, which a bare aiokafka consumer reads in 1.0 s (bench/sla_timers, one machine). This store reads
the changelog partitions a worker is newly assigned itself, in large fetches, read committed up to the last
stable offset, straight into the table's dict, and then tells faust's recovery it has applied everything up to
there (``persisted_offset``), so faust reads nothing more. With it, 1,013,958 records (1,000,000 clocks) load
in 4.1 s in the restarted worker against the bare consumer's 2.3 s (6.2 s against 3.1 s before cycle collection was
paused for the load).

The order is faust's: a rebalance first starts the transactional producers of the new assignment (which fences a
killed predecessor's producers and ends their open transactions), then the tables load, then recovery runs.
Only raw tables (bytes keys and values, shared.streaming.streams.raw_table) use it: their records are stored as
they are.

With a SnapshotPolicy (under exactly_once), the store also keeps a local snapshot of each partition it holds
(shared/streaming/snapshots.py) and a restart loads that first and reads the changelog only from the snapshot's offset.
A snapshot must hold committed state only, so it is taken at a commit (shared/streaming/eos.py calls ``after_commit``
inside the commit gate, once every source-partition transaction has committed): then, if no change made since
the commit began is still uncommitted, memory is exactly what the changelog committed. The offset recorded per
partition is the next one after the last change of ours the broker acknowledged (or the end the load read to),
never above the true end. The write itself runs beside the worker's events, a chunk at a time: the key list is
taken at the commit, and a key changed while the chunks are written has its old value kept in a journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
import structlog
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from faust import current_event
from faust.stores.memory import Store as MemoryStore
from faust.tables import TableManager
from faust.types import TP
from faust.types.tuples import FutureMessage

from shared.streaming.eos import SourcePartitionTransactions
from shared.streaming.snapshots import SnapshotDir, SnapshotError, SnapshotPolicy, SnapshotWriter, load_snapshot
from shared.streaming.stopping import stop_consumer
from shared.streaming.transactional import changelog_reader

log = structlog.get_logger("ticketloop.tables")

PACE_MAX_S = 0.05  # the longest a snapshot rests between chunks


def bootstrap_of(app: Any) -> str:
    return ",".join(f"{url.host}:{url.port or 9092}" for url in app.conf.broker)


class ChangelogStore(MemoryStore[bytes, bytes]):
    """faust's memory store, filled from its changelog by a plain consumer when partitions are assigned."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._applied: dict[TP, int] = {}  # per changelog partition: the last offset held in memory
        self._next: dict[int, int] = {}  # per held partition: at most the next changelog offset after memory
        self._held: set[int] = set()  # the changelog partitions this worker holds as active
        self._snapshots: SnapshotDir | None = None
        self._policy: SnapshotPolicy | None = None
        self._transactions: SourcePartitionTransactions | None = None
        self._seq = 0  # changes made so far
        self._commit_seq = 0  # changes made before the commit under way began
        # transactional id -> (seq of its last change not yet known committed, the partition changed)
        self._dirty: dict[str, tuple[int, int]] = {}
        self._journal: dict[bytes, tuple[bytes | None, int | None]] | None = None  # old values, while writing
        self._writing: asyncio.Task[None] | None = None
        self._snapshot_due = 0.0  # monotonic time of the next snapshot
        self._snapshot_current = False  # the files on disk hold what memory holds

    # -- changes: faust's Table sets and deletes through these ----------------------------------------------

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._before_change(key)
        self.data[key] = value
        event = current_event()
        if event is not None:  # faust's tables change only while an event is handled: its partition's changelog
            self._key_partition[key] = event.message.partition

    def __delitem__(self, key: bytes) -> None:
        self._before_change(key)
        del self.data[key]
        self._key_partition.pop(key, None)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def clear(self) -> None:
        for key in list(self.data):
            del self[key]

    def _before_change(self, key: bytes) -> None:
        if self._journal is not None and key not in self._journal:
            self._journal[key] = (self.data.get(key), self._key_partition.get(key))
        self._seq += 1
        self._snapshot_current = False
        transactions, event = self._transactions, current_event()
        if transactions is not None and event is not None:
            tid = transactions.transactional_id_for(self.table.changelog_topic.get_topic_name(), None)
            if tid is not None:
                self._dirty[tid] = (self._seq, event.message.partition)

    def note_written(self, partition: int, offset: int) -> None:
        """The broker acknowledged our change at ``offset`` of this changelog partition."""
        if offset >= self._next.get(partition, 0):
            self._next[partition] = offset + 1

    def persisted_offset(self, tp: TP) -> int | None:
        return self._applied.get(tp)

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        # faust calls this as each change of ours is acknowledged: a partition kept across a rebalance is
        # then known to be current, and is not read again
        self._applied[tp] = offset

    async def on_rebalance(
        self,
        assigned: set[TP],
        revoked: set[TP],
        newly_assigned: set[TP],
        generation_id: int = 0,  # noqa: ARG002 - faust's signature
    ) -> None:
        await self._stop_writing()
        self._setup_snapshots()
        topic = self.table.changelog_topic.get_topic_name()
        for tp in revoked:
            self._applied.pop(tp, None)
            if tp.topic == topic:
                self._next.pop(tp.partition, None)
        actives = self.app.assignor.assigned_actives()
        self._held = {tp.partition for tp in assigned if tp.topic == topic and tp in actives}
        # a revoked partition's open transaction ended with the rebalance (committed or aborted), and what memory
        # held of it is dropped: its changes no longer keep snapshots from being taken
        self._dirty = {tid: dirty for tid, dirty in self._dirty.items() if dirty[1] in self._held}
        self._snapshot_current = False
        load = sorted(tp for tp in newly_assigned if tp.topic == topic and tp in actives)
        if load:
            await self.load(load)

    async def on_stop(self) -> None:
        await self._stop_writing()
        if self._snapshots is not None:
            self._snapshots.release()
        await super().on_stop()

    async def load(self, tps: list[TP]) -> int:
        """Read ``tps`` into memory, from their snapshots if usable, then from the changelog up to its last stable
        offset; the number of changelog records read."""
        started = time.monotonic()
        self._held.update(tp.partition for tp in tps)
        self._forget({tp.partition for tp in tps})  # what an earlier hold of these partitions left
        consumer = changelog_reader(bootstrap_of(self.app))
        await consumer.start()
        parts = [TopicPartition(tp.topic, tp.partition) for tp in tps]
        # No cycle collection while loading: each fetch makes up to 100,000 record objects that live until they
        # are applied, so the collector keeps running full passes over the worker's whole heap for nothing (the
        # stored keys and values are bytes, which it never tracks). Measured on 1,000,000 records in a process
        # with the sla service imported: 3.9-4.2 s with it, 3.0 s without (three runs each).
        collecting = gc.isenabled()
        gc.disable()
        try:
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends: dict[TopicPartition, int] = await consumer.end_offsets(parts)
            starts = await self._load_snapshots(consumer, parts, ends)
            for tp in parts:  # from a snapshot's offset, where one was loaded
                if starts[tp]:
                    consumer.seek(tp, starts[tp])
            records = await self._read(consumer, {tp for tp in parts if ends[tp] > starts[tp]}, ends)
            for tp in parts:
                self._applied[TP(tp.topic, tp.partition)] = ends[tp] - 1  # faust's convention: the last applied
                self._next[tp.partition] = ends[tp]
        finally:
            if collecting:
                gc.enable()
            await stop_consumer(consumer)
        log.info(
            "table_loaded",
            table=self.table.name,
            partitions=len(tps),
            records=records,
            from_snapshots=sum(1 for tp in parts if starts.get(tp)),
            keys=len(self.data),
            seconds=round(time.monotonic() - started, 3),
        )
        return records

    async def _read(
        self, consumer: AIOKafkaConsumer, left: set[TopicPartition], ends: dict[TopicPartition, int]
    ) -> int:
        """Apply the records of ``left`` from the consumer's positions up to ``ends``; how many were read."""
        records = 0
        data, where = self.data, self._key_partition
        while left:
            batch = await consumer.getmany(*left, timeout_ms=1000, max_records=100_000)
            for tp, messages in batch.items():
                partition = tp.partition
                for m in messages:
                    if m.offset >= ends[tp]:
                        break
                    if m.value is None:  # a tombstone: the key was deleted
                        data.pop(m.key, None)
                        where.pop(m.key, None)
                    else:
                        data[m.key] = m.value
                        where[m.key] = partition
                records += len(messages)
            for tp in list(left):
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
        return records

    def _forget(self, partitions: set[int]) -> None:
        """Drop the keys held of these partitions."""
        for key in [k for k, p in self._key_partition.items() if p in partitions]:
            self.data.pop(key, None)
            del self._key_partition[key]

    # -- snapshots --------------------------------------------------------------------------------------------

    def _setup_snapshots(self) -> None:
        """On the first rebalance: lock the snapshot directory and hook into the commits (exactly_once only)."""
        policy: SnapshotPolicy | None = getattr(self.table, "snapshots", None)
        if policy is None or self._policy is not None:
            return
        self._policy = policy
        transactions = getattr(self.app.consumer, "transactions", None)
        if not isinstance(transactions, SourcePartitionTransactions):
            log.warning("snapshots_off", table=self.table.name, reason="they need processing_guarantee exactly_once")
            return
        snapshots = SnapshotDir(policy.directory)
        try:
            snapshots.lock()
        except (SnapshotError, OSError) as exc:
            log.exception("snapshots_off", table=self.table.name, reason=str(exc))
            return
        self.use_snapshots(policy, snapshots, transactions)
        transactions.before_commit.append(self.before_commit)
        transactions.after_commit.append(self.after_commit)

    def use_snapshots(
        self, policy: SnapshotPolicy, snapshots: SnapshotDir, transactions: SourcePartitionTransactions | None
    ) -> None:
        """Load from and write snapshots in ``snapshots`` (locked); changes are counted committed per transaction
        of ``transactions`` (None: only a commit with no change under way snapshots)."""
        self._policy, self._snapshots, self._transactions = policy, snapshots, transactions
        self._snapshot_due = time.monotonic() + policy.interval_s

    async def _load_snapshots(
        self, consumer: AIOKafkaConsumer, parts: list[TopicPartition], ends: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """Per partition, the offset to read the changelog from: a usable snapshot's, after loading it; else 0."""
        starts = dict.fromkeys(parts, 0)
        snapshots, policy = self._snapshots, self._policy
        if snapshots is not None and policy is not None:
            firsts: dict[TopicPartition, int] = await consumer.beginning_offsets(parts)
            for tp in parts:
                starts[tp] = await self._load_snapshot(snapshots, policy, tp, firsts[tp], ends[tp])
        return starts

    async def _load_snapshot(
        self, snapshots: SnapshotDir, policy: SnapshotPolicy, tp: TopicPartition, first: int, end: int
    ) -> int:
        """Load the partition's snapshot, if it has a usable one: the offset to read the changelog from (0: none)."""
        partition = tp.partition
        try:
            found = await asyncio.to_thread(load_snapshot, snapshots, policy, tp.topic, partition, first, end)
        except SnapshotError as exc:
            log.warning("snapshot_unusable", table=self.table.name, partition=partition, error=str(exc))
            return 0
        if found is None:
            return 0
        data, offset = found
        self._forget({partition})
        self.data.update(data)
        self._key_partition.update(dict.fromkeys(data, partition))
        log.info("snapshot_loaded", table=self.table.name, partition=partition, offset=offset, keys=len(data))
        return offset

    def before_commit(self) -> None:
        self._commit_seq = self._seq

    def after_commit(self, committed: set[str], settled: bool) -> None:
        """Called by the commit, inside its gate, once the transactions of ``committed`` have committed; ``settled``:
        no event was under way and every change was published. Starts a snapshot when one is due and memory holds
        committed state only."""
        for tid in committed:
            if tid in self._dirty and self._dirty[tid][0] <= self._commit_seq:
                del self._dirty[tid]
        policy, snapshots, now = self._policy, self._snapshots, time.monotonic()
        if (
            policy is None
            or snapshots is None
            or not settled
            or self._dirty
            or self._writing is not None
            or self._snapshot_current
            or now < self._snapshot_due
            or not self._held
            or not self._held <= self._next.keys()
        ):
            return
        self._snapshot_due = now + policy.interval_s
        offsets = {p: self._next[p] for p in self._held}
        journal: dict[bytes, tuple[bytes | None, int | None]] = {}
        self._journal = journal
        write = self._write_snapshot(snapshots, policy, list(self.data), journal, offsets, self._seq)
        self._writing = asyncio.ensure_future(write)

    async def _write_snapshot(
        self,
        snapshots: SnapshotDir,
        policy: SnapshotPolicy,
        keys: list[bytes],
        journal: dict[bytes, tuple[bytes | None, int | None]],
        offsets: dict[int, int],
        seq: int,
    ) -> None:
        """Write what memory held when ``keys`` were listed (changes since: from the journal)."""
        started, topic = time.monotonic(), self.table.changelog_topic.get_topic_name()
        writers: dict[int, SnapshotWriter] = {}
        try:
            for p, offset in offsets.items():  # one by one: a failure after some leaves them to the finally
                writers[p] = snapshots.writer(topic, p, offset)
            pending: dict[int, list[bytes]] = {p: [] for p in offsets}
            data, where = self.data, self._key_partition
            limit, step = 2 * policy.chunk_pairs, policy.chunk_pairs
            clock = asyncio.get_running_loop().time
            for start in range(0, len(keys), step):
                began = clock()
                for key in keys[start : start + step]:
                    old = journal.get(key)
                    value, partition = (data.get(key), where.get(key)) if old is None else old
                    if value is None or partition is None:
                        continue
                    flat = pending.get(partition)
                    if flat is None:  # not a partition held at the commit
                        continue
                    flat.append(key)
                    flat.append(value)
                    if len(flat) >= limit:
                        writers[partition].write(flat)
                        flat.clear()
                # Between chunks the worker's events and timers run, and for as long as the chunk took: a yield
                # alone was not enough. An event takes several steps through the loop, and each step waited out a
                # chunk (measured at 1M clocks with 10,000-key chunks: breach lateness p99 173 ms, while the loop
                # probe's p99 stayed at 5 ms). The snapshot takes about twice its CPU time this way.
                await asyncio.sleep(min(clock() - began, PACE_MAX_S))
            for partition, flat in pending.items():
                writers[partition].write(flat)
            finishing, writers = list(writers.values()), {}  # the thread owns them now: fsync, then rename
            await asyncio.to_thread(_finish, finishing)
            self._snapshot_current = self._seq == seq
            log.info(
                "snapshot_written",
                table=self.table.name,
                partitions=len(offsets),
                keys=len(keys),
                seconds=round(time.monotonic() - started, 3),
            )
        except OSError as exc:  # a full or broken disk: the worker goes on; the next snapshot tries again
            log.exception("snapshot_failed", table=self.table.name, error=str(exc))
        finally:
            for writer in writers.values():
                writer.discard()
            self._journal = None
            self._writing = None

    async def _stop_writing(self) -> None:
        """Stop a snapshot being written (its partial files are removed; the previous snapshots stay)."""
        task = self._writing
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _finish(writers: list[SnapshotWriter]) -> None:
    """Make the written files the partitions' snapshots (off the event loop: fsync is slow on big files)."""
    try:
        for writer in writers:
            writer.finish()
    except BaseException:
        for writer in writers:
            writer.discard()
        raise
    for writer in writers:
        writer.commit()


class ChangelogTable(faust.Table[bytes, bytes]):
    """A faust Table stored in a ChangelogStore, snapshotted locally if given a SnapshotPolicy."""

    def __init__(self, app: Any, *, snapshots: SnapshotPolicy | None = None, **kwargs: Any) -> None:
        self.snapshots = snapshots
        super().__init__(app, **kwargs)

    def _on_changelog_sent(self, fut: FutureMessage) -> None:
        super()._on_changelog_sent(fut)
        store = self.data
        if isinstance(store, ChangelogStore):
            written = fut.result()
            store.note_written(written.topic_partition.partition, written.offset)

    def _new_store(self) -> ChangelogStore:
        return ChangelogStore(
            "memory://",
            self.app,
            self,
            table_name=self.name,
            key_type=self.key_type,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            value_type=self.value_type,
            loop=self.loop,
            options=self.options,
        )


class KnownChangelogsTableManager(TableManager):
    """faust's table manager, which waits its one second at start only while a changelog topic is new.

    faust sleeps a second before it registers the app's tables and lets the consumer subscribe: every restart paid
    it before reading a record (measured: the longest step between a restarted sla worker's start and its group
    join). The wait is needed on a deployment's first start: without it the consumer subscribed right after faust
    created the changelog topic, before its metadata arrived, the assignor ignored the "missing" topic and the
    worker crashed on PartitionsMismatch (seen in the end-to-end test). So it is skipped only when the broker
    already knows every changelog topic with its partitions; our services declare every table while the app is
    built, so none is declared late.
    """

    async def on_start(self) -> None:
        names = [table.changelog_topic.get_topic_name() for table in self.values()]
        bootstrap = bootstrap_of(self.app)
        if not await topics_known(bootstrap, names):
            # a first start: create the changelog topics now and wait until the broker lists them with their
            # partitions (a fixed second was not always enough on a loaded machine: the worker then subscribed
            # before the metadata arrived and crashed on PartitionsMismatch)
            for table in self.values():
                await table.changelog_topic.maybe_declare()
            if not await wait_known(bootstrap, names, self.sleep):
                await self.sleep(1.0)
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


async def wait_known(
    bootstrap: str, names: list[str], sleep: Callable[[float], Awaitable[None]], limit_s: float = 30.0
) -> bool:
    """Poll the broker until it lists every topic of ``names`` with its partitions; False after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if await topics_known(bootstrap, names):
            return True
        await sleep(0.2)
    return False


async def topics_known(bootstrap: str, names: list[str], timeout_s: float = 5.0) -> bool:
    """Whether the broker's metadata has every topic of ``names`` with its partitions (False if it cannot say)."""
    if not names:
        return True
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        metadata = await asyncio.wait_for(client.fetch_all_metadata(), timeout_s)
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await client.close()
    return all(metadata.partitions_for_topic(name) for name in names)
