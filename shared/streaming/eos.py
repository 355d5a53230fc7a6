"""Exactly-once processing on faust: every send made while handling an event joins the transaction of the
partition the event came from.

faust 0.15.3 opens one Kafka transaction per assigned source partition and commits it together with that
partition's consumer offsets. But its TransactionManager picks the transaction for a send by the partition the
message goes *to*. A message re-keyed to another partition (router events to tickets, tickets to the
dedup-key map) then waits in a transaction that only commits when that other partition next commits offsets;
read-committed consumers never see it while nothing else arrives there, and a crash can commit the input without
the output. Kafka Streams ties a task's outputs to its input partition; this does the same:

- a send made while handling an event (current_event) joins the event's source-partition transaction, the one
  committed with that event's offset: outputs, table changes and the offset commit are one atomic unit;
- a table's changelog write queued by faust's send buffer (no current event there) goes to the transaction of
  its own partition, which is the source partition of the event that changed it (tables are co-partitioned);
  every message put in the buffer is published before a commit, so it is never a transaction late (drain,
  BufferWatch);
- a send outside any event (a periodic timer) is a plain idempotent send, acknowledged at once; timers only
  propose work (a tick command, a due clock) and the receiving agent decides inside its transaction.

faust also commits on a timer, whatever its agents are doing: a transaction committed while an event is half
handled carries that event's first outputs but not its offset, and a crash then replays the event and publishes
them again. Commits here happen on event boundaries (EventBoundary): a commit closes the gate to new events,
waits until every event already let in is acked (its outputs and table writes are all in the open transaction),
computes the offsets to commit only then, commits, and opens the gate again. The wait is one event's handling
time (measured on bench/router_storm: 145 events/s against 178 without the gate, same broker, one after the other).
A batch (take_events) acks late by design, so its events only count once they send or write a table.

Two faust recovery faults, both found by killing the router mid-storm and restarting it at once, are fixed here:
a restarted worker read changelog highwaters it had not fetched yet as "empty" (StableHighwaterThread), and it
let agents work on its stream partitions before moving them to their committed offsets (BoundaryConsumer).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import faust
import structlog
from aiokafka.errors import ProducerFenced
from faust import current_event
from faust.exceptions import Skip
from faust.sensors import Sensor
from faust.transport.consumer import TransactionManager
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer
from faust.types import TP
from faust.types.tuples import RecordMetadata

from shared.streaming.driver import IDLE_FETCH_WAIT_MS

log = structlog.get_logger("ticketloop.eos")

FETCH_MAX_WAIT_MS = IDLE_FETCH_WAIT_MS  # an idle stream's long poll: the longest an offset lookup waits behind it
RECHECK_S = 0.1  # how often a waiting commit re-reads the assignment (a revoked partition's events never ack)


class EventBoundary:
    """The events of one worker that have work in the open transactions, and the gate a commit closes.

    A message is *in* from the moment it is let through the gate (or, for a batch, from its first send or table
    write) until faust acks it, which it does once the handler is done with it."""

    def __init__(self, settle_timeout_s: float = 30.0) -> None:
        self.settle_timeout_s = settle_timeout_s
        self._open = asyncio.Event()
        self._open.set()
        self._in: set[Any] = set()  # faust Messages
        self._drained = asyncio.Event()
        self.clean = False  # inside settled(): every let-in event was acked (no timeout cut the wait short)

    async def admit(self, message: Any) -> None:
        """Let a message's work into the open transactions; while a commit is under way, wait for it."""
        if message in self._in:
            return
        while not self._open.is_set():
            await self._open.wait()
        self._in.add(message)

    def touch(self, message: Any) -> None:
        """A message wrote something without passing the gate (a table write from a batch): count it now."""
        self._in.add(message)

    def acked(self, message: Any) -> None:
        self._in.discard(message)
        if not self._in:
            self._drained.set()

    def unsettled(self, assigned: set[Any]) -> int:
        """How many let-in messages of still-assigned partitions are not acked yet (forgets the rest)."""
        self._in = {m for m in self._in if not m.acked and m.tp in assigned}
        return len(self._in)

    @asynccontextmanager
    async def settled(self, assignment: Callable[[], set[Any]]) -> AsyncIterator[None]:
        """Close the gate and wait until every let-in event is acked; open it again on leaving."""
        self._open.clear()
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.settle_timeout_s
            clean = True
            while left := self.unsettled(assignment()):
                if loop.time() >= deadline:  # a handler stuck this long: commit anyway, never stall for good
                    log.warning("eos_commit_unsettled", events=left, waited_s=self.settle_timeout_s)
                    clean = False
                    break
                self._drained.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._drained.wait(), min(RECHECK_S, deadline - loop.time()))
            self.clean = clean
            yield
        finally:
            self.clean = False
            self._open.set()


class BufferWatch:
    """Every message put in faust's send buffer (a table's changelog write) until it is published.

    The buffer's own size is not enough to tell: its task takes a message off the queue and then awaits on the
    way to the producer, and for that moment the message is in neither. A commit that looked then put the
    table change in the next transaction while its event's offset and outputs committed in this one. Measured:
    after a SIGKILL a ticket version was published twice, the first copy committed, its table change aborted."""

    def __init__(self, buffer: Any) -> None:
        self.pending: set[asyncio.Future[Any]] = set()
        put = buffer.put

        def watched_put(fut: asyncio.Future[Any]) -> None:
            self.pending.add(fut)
            fut.add_done_callback(self.pending.discard)
            put(fut)

        buffer.put = watched_put


async def drain(watch: BufferWatch, timeout_s: float) -> bool:
    """Wait until every message put in the send buffer is published; False (and a warning) if that took longer
    than ``timeout_s`` (faust's own flush stops waiting when one message takes longer than 0.1 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while watch.pending:
        left = deadline - loop.time()
        if left <= 0:
            log.warning("eos_buffer_not_drained", pending=len(watch.pending), waited_s=timeout_s)
            return False
        await asyncio.wait(set(watch.pending), timeout=left)
    return True


class SourcePartitionTransactions(TransactionManager):
    """faust's TransactionManager with the transaction chosen by the event being handled (see module doc)."""

    def __init__(self, *args: Any, boundary: EventBoundary, **kwargs: Any) -> None:
        self.boundary = boundary
        # called by each commit: before it starts, and after every transaction of it committed (with the
        # transactional ids committed, and whether the commit was at a clean event boundary with every change
        # published); a table's snapshots start there (shared/streaming/tables.py)
        self.before_commit: list[Callable[[], None]] = []
        self.after_commit: list[Callable[[set[str], bool], None]] = []
        super().__init__(*args, **kwargs)
        producer: Any = self.producer
        self.buffered = BufferWatch(producer.buffer)

    def _group(self, topic: str) -> int:
        # faust's assignor groups co-partitioned topics; an app without tables uses Kafka's round-robin
        # assignor, which has no groups: all its topics are then one group
        groups: Mapping[str, int] = getattr(self.app.assignor, "_topic_groups", {})
        return groups.get(topic, 0)

    def _tid(self, topic: str, partition: int) -> str:
        return f"{self.app.conf.id}-{self._group(topic)}-{partition}"

    def _tps_to_transactional_ids(self, tps: set[TP]) -> set[str]:
        return {self._tid(tp.topic, tp.partition) for tp in tps if not self.app.assignor.is_standby(tp)}

    def transactional_id_for(self, topic: str, partition: int | None) -> str | None:
        event = current_event()
        if event is not None:
            tp = event.message.tp
            return self._tid(tp.topic, tp.partition)
        tables: Any = self.app.tables
        if partition is not None and topic in tables.changelog_topics:
            return self._tid(topic, partition)
        return None

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
        *,
        transactional_id: str | None = None,  # noqa: ARG002 - faust's signature; ours is chosen here
    ) -> Awaitable[RecordMetadata]:
        event = current_event()
        if event is not None:  # a batch's event joins here; a gated event is in already
            await self.boundary.admit(event.message)
        p = self.consumer.key_partition(topic, key, partition)
        tid = self.transactional_id_for(topic, p)
        producer: Any = self.producer
        return await producer.send(topic, key, value, p, timestamp, headers, transactional_id=tid)  # type: ignore[no-any-return]

    async def commit(self, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
        producer: Any = self.producer
        for hook in self.before_commit:
            hook()
        # every changelog write queued before this commit belongs in it: wait until each one is published
        drained = await drain(self.buffered, self.boundary.settle_timeout_s)
        by_tid: dict[str, dict[TP, int]] = {}
        for tp, offset in offsets.items():
            by_tid.setdefault(self._tid(tp.topic, tp.partition), {})[tp] = offset
        if by_tid:
            # one transaction per source partition, each on its own producer: committed side by side, not one
            # after the other (faust's loop waits for every round trip of each before it starts the next)
            commits = [
                producer.commit_transactions({tid: offs}, self.app.conf.id, start_new_transaction=start_new_transaction)
                for tid, offs in by_tid.items()
            ]
            try:
                await asyncio.gather(*commits)
            except ProducerFenced as exc:  # another worker took these partitions over: stop, as faust does
                await self.app.crash(exc)
                return True
        settled = drained and self.boundary.clean
        for after in self.after_commit:
            after(set(by_tid), settled)
        return True


def _boundary(app: Any) -> EventBoundary | None:
    transactions = getattr(app.consumer, "transactions", None)
    return getattr(transactions, "boundary", None)


class StableHighwaterThread(AIOKafkaConsumerThread):
    """faust's consumer thread, with changelog highwaters asked of the broker.

    Under exactly_once faust takes a changelog's highwater from the last stable offset the consumer last saw in
    a fetch response. Before the first fetch of that partition there is none, and faust reads that as an empty
    changelog: a restarted router recovered empty tables and opened a second ticket for every group. ListOffsets
    under read_committed (the consumer's isolation level) gives the last stable offset at once.

    Its fetches wait at most FETCH_MAX_WAIT_MS for data instead of faust's 1.5 s. A broker answers one
    connection's requests in order, so every offset lookup of a recovery (highwaters, earliest offsets) queued
    behind an idle stream's long poll: measured 1.6 s between a restarted sla worker loading its table and
    faust's "Recovery complete", with nothing left to read."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # faust passes 1500, with no setting
        return consumer

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        return await self._ensure_consumer().end_offsets(partitions)  # type: ignore[no-any-return]


class BoundaryConsumer(Consumer):
    """faust's Kafka consumer whose commits wait for an event boundary (offsets are computed after the wait), and
    whose stream partitions stay paused after a rebalance until they have been moved to their committed offsets.

    faust's recovery resumes the stream partitions first and seeks after, with flow already on (it was switched
    on to read the changelogs). For the length of that seek's round trips the agents work on records from the
    positions the consumer had at assignment, and commit them. The seek then lands on offsets read before that
    commit was complete, and records fetched before the seek keep arriving after it: faust takes those for a gap
    it may commit over, and drops the seek's re-reads as already seen. Traced: a restart right after a SIGKILL
    lost 13 of 3,000 alerts this way. Here a stream partition resumed between an assignment and the next
    seek is held until that seek is done."""

    _seek_pending = False
    _held: frozenset[TP] = frozenset()

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return StableHighwaterThread(self, loop=self.loop, beacon=self.beacon)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        self._seek_pending = True
        await super().on_partitions_assigned(assigned, generation_id)

    def resume_partitions(self, tps: Any) -> None:
        tps = set(tps)
        if self._seek_pending:
            held = {tp for tp in tps if not self._is_changelog_tp(tp)}
            self._held |= held
            tps -= held
        super().resume_partitions(tps)

    async def perform_seek(self) -> None:
        held, self._held = self._held, frozenset()
        try:
            await super().perform_seek()
        except BaseException:
            if held:  # faust goes on without the seek (its recovery logs and resumes): so do we, and say so
                log.warning("eos_seek_failed_resuming_anyway", partitions=len(held))
            raise
        finally:
            if held:
                self._seek_pending = False
                super().resume_partitions(held & self.assignment())

    async def force_commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        boundary = _boundary(self.app)
        if boundary is None or not self.in_transaction:
            return await super().force_commit(topics, start_new_transaction)  # type: ignore[no-any-return]
        async with boundary.settled(self.assignment):
            return await super().force_commit(topics, start_new_transaction)  # type: ignore[no-any-return]


class BoundaryStream(faust.Stream[Any]):
    """faust's Stream whose events pass the commit gate before the handler sees them."""

    async def on_merge(self, value: Any = None) -> Any:
        value = await super().on_merge(value)
        event = self.current_event
        if event is not None and self.enable_acks:  # a batch (take_events) acks late: it joins on first write
            boundary = _boundary(self.app)
            if boundary is not None:
                message = event.message
                await boundary.admit(message)
                if message.generation_id != self.app.consumer_generation_id or not self.app.flow_control.is_active():
                    # held at the gate across a rebalance: faust skips such an event, and so do we. Marked acked
                    # so that faust does not count its offset as done: the new assignment reads it again.
                    boundary.acked(message)
                    message.acked = True
                    raise Skip()
        return value


class BoundarySensor(Sensor):
    """Tells the boundary when a message is acked, and counts a batch's table write as its event's work (a gated
    event is counted already)."""

    def __init__(self, boundary: EventBoundary, **kwargs: Any) -> None:
        self.boundary = boundary
        super().__init__(**kwargs)

    def _touch(self) -> None:
        event = current_event()
        if event is not None:
            self.boundary.touch(event.message)

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:  # noqa: ARG002 - faust's signature
        self._touch()

    def on_table_del(self, table: Any, key: Any) -> None:  # noqa: ARG002 - faust's signature
        self._touch()

    def on_message_out(self, tp: TP, offset: int, message: Any) -> None:  # noqa: ARG002 - faust's signature
        self.boundary.acked(message)


def install(app: Any, settle_timeout_s: float = 30.0) -> None:
    """Exactly-once on event boundaries for this app (see module doc); called under exactly_once only."""
    boundary = EventBoundary(settle_timeout_s)
    app.transport.TransactionManager = functools.partial(SourcePartitionTransactions, boundary=boundary)
    app.transport.Consumer = BoundaryConsumer
    app.conf.Stream = BoundaryStream
    app.sensors.add(BoundarySensor(boundary))
