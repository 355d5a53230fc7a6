"""One lane per target (a chat entry or an email address): the runtime that sends the notifier's notifications.

Each lane sends its target's notifications in planning order, one at a time, when the item is due, the target's
circuit breaker lets it through and its rate limit has a token; when more notifications wait than the rate limit
lets go one a message, the lane folds them into digests on the messages it has. A new notification is sent first
and written to the outbox only if it waits: a failure keeps it there at once (rescheduled), and the checkpoint
before a commit keeps what a lane has held for ``hold_s`` (for what it held less, the commit stops below its
event). Only that lane waits: one dead endpoint never delays another target. A kind whose receivers take requests
side by side (the generic webhook) may have several messages in flight per target, never two of one ticket
(``in_flight``). All writes go through one writer, in order, a transaction per round. The decisions are
services/notifier/stages.py; this is the shell that sleeps, sends and writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from services.notifier.channels.base import UNFOLDED, Channel, DeliveryError, Message, RateLimit
from services.notifier.stages import (
    DIGEST_ID,
    Breaker,
    BreakerPolicy,
    RetryPolicy,
    Window,
    answered,
    at_commit,
    beside_wait_s,
    breaker_failure,
    breaker_success,
    breaker_wait,
    digest_budget,
    digest_members,
    fold,
    fold_size,
    message_from_json,
    message_to_json,
    next_attempt,
    record,
    remaining,
    same_source,
    shared_limit,
    span_s,
    take,
    until_token,
    window_from,
)
from shared.events import Delivery
from shared.infra.logging import get_logger
from shared.store import outbox
from shared.store.journal import Journal
from shared.store.outbox import Digest, Drop, Finish, GiveUp, Keep, Op, OutboxItem, Reschedule, Save
from shared.store.runner import SqlRunner

log = get_logger(__name__)
FINISHED_MEMORY = 50_000
"""Ids of items a lane finished, remembered so a reload racing with a send cannot bring one back: the last
``FINISHED_MEMORY`` / 2 to ``FINISHED_MEMORY`` of them (``Recent``)."""
JOURNAL_ROUND_S = 0.05
"""With a journal: how long journaled finishes gather before they go to the database in one transaction (the
lanes do not wait for it; the consumer's commit does). Each transaction writes every page it touches to SQLite's
log again: bench/notify_fanout's paced stream at 2,900 notifications a second took 254-285 us of CPU a
notification at 50 ms against 280-302 at 8 ms, and its log reached ``RESTART_FRAMES`` (a held checkpoint) 1-2
times in 20 s instead of 3-4."""
CATCH_UP_S = 0.005
"""A lane that may have several messages in flight sends one beside those under way only once it has waited this
long since it was planned (the lane is behind): keeping up, it sends one at a time, and a notifier killed then
repeats at most one of its messages."""
HOLD_S = 5.0
"""An item sent first that is still held this long after it was planned is written to the outbox at the next
commit; younger ones hold the commit below their event instead (stages.at_commit)."""
GATHER_S = 0.003
"""How long a write in place waits for others to share its transaction: one that nobody waits on to send again
(the lane has nothing else to send), or one a lane waits on while other lanes' sends are in flight. A paced
stream's answers come a few a millisecond, one a turn of the loop: a transaction each cost about 100 µs of
SQLite's commit on this machine, a record in a shared one about 10 µs."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


UNKNOWN_EVENT = ("", -1)
"""Where a lane holds the items whose event offset is not known (``held_key``)."""


def held_key(item: OutboxItem) -> tuple[str, int]:
    """Which of a lane's sequences of items held only in memory an item is in: its event's partition, or
    ``UNKNOWN_EVENT`` (``at_commit`` writes those whatever their age)."""
    return (item.source_topic, item.source_partition) if item.source_offset >= 0 else UNKNOWN_EVENT


@dataclass
class Recent:
    """The last ``size`` to 2 x ``size`` ids added, in two plain dicts of id → None taking turns. CPython stops
    tracking such a dict in its garbage collector (nothing in it can hold a cycle), so a full collection no longer
    walks them: an OrderedDict of 50,000 ids cost each one about 1.1 ms here, and the notifier's four webhook lanes
    of bench/notify_fanout filled theirs in a minute and a half of a paced stream."""

    size: int = FINISHED_MEMORY // 2
    _new: dict[str, None] = field(default_factory=dict)
    _old: dict[str, None] = field(default_factory=dict)

    def __contains__(self, key: str) -> bool:
        return key in self._new or key in self._old

    def __len__(self) -> int:
        return len(self._new) + len(self._old)

    def add(self, key: str) -> None:
        self._new[key] = None
        if len(self._new) >= self.size:
            self._old, self._new = self._new, {}

    def discard(self, key: str) -> None:
        self._new.pop(key, None)
        self._old.pop(key, None)


@dataclass
class LaneDeps:
    channels: Mapping[str, Channel]
    limits: Mapping[str, RateLimit | None]
    """Per channel kind: the vendor's rate limit per target."""
    max_bytes: Mapping[str, int]
    """Per channel kind: how much text a digest may hold."""
    engine: Engine
    retry: RetryPolicy
    breaker: BreakerPolicy
    on_records: Callable[[Sequence[Delivery]], Awaitable[None]]
    """Told of every record written to the delivery log (the deliveries topic, metrics)."""
    on_give_up: Callable[[OutboxItem, str], Awaitable[None]]
    """Told of every item given up (the dead-letter topic)."""
    on_digest: Callable[[str, int], None] = lambda _kind, _n: None
    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], datetime] = _utcnow
    jitter: Callable[[], float] = random.random
    sql_retry_s: float = 1.0
    sql: SqlRunner | None = None
    """How the writer reaches the database (in place on SQLite); made from ``engine`` when not given."""
    journal: Journal | None = None
    """Where a send's outcome is made durable before the lane sends again (None: the database, in lockstep)."""
    hold_s: float = HOLD_S
    """How long an item sent first may be held in memory only, its event's offset not committed (``at_commit``)."""
    catch_up_s: float = CATCH_UP_S
    """How long a message waits before it is sent beside others under way to its target (``beside_wait_s``)."""
    share: Callable[[], tuple[int, int]] = lambda: (1, 1)
    """The partitions this worker owns, of all its consumer group's: its part of each vendor's limit
    (``shared_limit``)."""
    in_flight: Mapping[str, int] = field(default_factory=dict)
    """Per channel kind: how many messages a lane may have on their way at once, never two of one ticket (a kind
    not named: one; ``ChannelKind.in_flight``)."""


@dataclass
class Lane:
    kind: str
    target: str
    deps: LaneDeps
    writer: Writer
    """The Dispatcher's single writer. A lane waits for a send's outcome to be durable (journaled, or written to
    the database without a journal) before it sends again: a crash repeats at most the one send of a lane not
    yet durable, and a restarted lane's rate window (from the delivery log) misses at most that one. A lane of a
    kind with more than one message in flight (``in_flight``) waits so per send: a crash repeats at most that
    many of its sends."""
    items: dict[str, OutboxItem] = field(default_factory=dict)
    unsaved: dict[tuple[str, int], dict[str, None]] = field(default_factory=dict)
    """Items held here only, not (yet) in the outbox: sent first, kept in the outbox only once they wait. Per
    partition of their event, in planning order, which is their events' offset order (``at_commit`` looks only at
    each one's front); those whose event offset is not known under ``UNKNOWN_EVENT``."""
    finished: Recent = field(default_factory=Recent)
    window: Window = field(default_factory=Window)
    breaker: Breaker = field(default_factory=Breaker)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    writing: int = 0
    """Sends waiting for their outcome to be written (the next send waits for it)."""
    flying: dict[str, str] = field(default_factory=dict)
    """Sends under way beside the lane's loop (a kind with ``in_flight`` above one): notification id → ticket."""
    _sending: set[asyncio.Task[None]] = field(default_factory=set)
    _taken_at: float | None = None
    """When the send under way took its place in the rate window (None: no limit, or none taken)."""
    _heap: list[tuple[int, str]] = field(default_factory=list)
    kept: dict[str, Message] = field(default_factory=dict)
    """Digests formed and kept in the outbox before their send, not yet delivered or given up: digest id → the
    message, sent again as it is (a failure, or a notifier that died while it was on its way)."""
    kept_of: dict[str, str] = field(default_factory=dict)
    """A kept digest's members: notification id → digest id (never folded into another message)."""

    def add(self, items: Iterable[OutboxItem], saved: bool = True) -> None:
        """Hold these items; ``saved=False``: they are not in the outbox yet (``held_only`` gives them to the
        checkpoint, which writes them or holds the commit below their event)."""
        added = False
        for item in items:
            nid = item.notification_id
            if nid not in self.finished and nid not in self.items:
                self.items[nid] = item
                heapq.heappush(self._heap, (item.seq, nid))
                added = True
                if not saved:
                    self.unsaved.setdefault(held_key(item), {})[nid] = None
        if added and self.writing:  # the outcome being written now holds a send: no more gathering for it
            self.writer.hurry()
        self.wake.set()

    def held_only(self) -> list[Iterator[OutboxItem]]:
        """The items held here only, not in the outbox, as they stand now: per partition, in planning order
        (iterators over ``unsaved``: used up before any of them changes)."""
        items = self.items
        return [(items[nid] for nid in held if nid in items) for held in self.unsaved.values()]

    def is_unsaved(self, item: OutboxItem) -> bool:
        return item.notification_id in self.unsaved.get(held_key(item), ())

    def release(self, items: Iterable[OutboxItem]) -> None:
        """These items are in the outbox from now on, or gone: no longer held here only."""
        for item in items:
            key = held_key(item)
            held = self.unsaved.get(key)
            if held is not None:
                held.pop(item.notification_id, None)
                if not held:
                    del self.unsaved[key]

    def _head(self) -> OutboxItem | None:
        """The first item in planning order (a heap: a backlog after an outage is not sorted at every send)."""
        while self._heap and self._heap[0][1] not in self.items:
            heapq.heappop(self._heap)
        return self.items[self._heap[0][1]] if self._heap else None

    def drop(self, partitions: set[tuple[str, int]]) -> None:
        """Forget the items of revoked partitions (their new owner loads them from the outbox, and the digests
        they are kept in)."""
        for nid, item in list(self.items.items()):
            if (item.source_topic, item.source_partition) in partitions:
                del self.items[nid]
                self.release([item])
                digest_id = self.kept_of.get(nid)
                if digest_id is not None:
                    self._unkeep(digest_id)

    def keep_loaded(self, digest: Digest) -> bool:
        """A digest kept in the outbox by a notifier that is gone, whose members were just loaded here: it goes
        again as it was, before anything else of theirs. Only when every member is here (a digest is all or
        nothing); else its members are folded anew."""
        members = digest.members
        if not members or not all(m in self.items for m in members):
            return False
        self.kept[digest.digest_id] = message_from_json(digest.payload)
        self.kept_of.update(dict.fromkeys(members, digest.digest_id))
        return True

    def _unkeep(self, digest_id: str) -> None:
        message = self.kept.pop(digest_id, None)
        if message is not None:
            for nid in digest_members(message):
                self.kept_of.pop(nid, None)

    @property
    def limit(self) -> RateLimit | None:
        """The vendor's limit per target, this worker's part of it (``shared_limit``)."""
        limit = self.deps.limits.get(self.kind)
        return None if limit is None else shared_limit(limit, *self.deps.share())

    def _ordered(self) -> list[OutboxItem]:
        return sorted(self.items.values(), key=lambda i: i.seq)

    def _wait_s(self, head: OutboxItem) -> float:
        """How long before the head may go: its retry time, the breaker, the rate limit."""
        wait = (head.due_at - self.deps.wall()).total_seconds()
        wait = max(wait, breaker_wait(self.breaker, self.deps.monotonic()))
        if self.limit is not None:
            wait = max(wait, until_token(self.window, self.limit, self.deps.monotonic()))
        return wait

    async def _sleep(self, seconds: float) -> None:
        """Until woken or ``seconds`` are up: a timer that wakes the lane (``asyncio.wait_for`` made a task, a
        future and a timer for each wait, and a lane keeping up waits once for most of its messages)."""
        self.wake.clear()
        timer = asyncio.get_running_loop().call_later(max(seconds, 0.001), self.wake.set)
        try:
            await self.wake.wait()
        finally:
            timer.cancel()

    async def run(self) -> None:
        """Send until cancelled; a fault in one round (a bug, a callback's error) is logged and the lane goes on."""
        await self._restore_window()
        while True:
            try:
                await self._round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the lane must outlive any one fault, or its target would go silent
                # the class only: an error's text can carry a webhook URL
                log.error("lane_fault", error=type(exc).__name__, channel=self.kind, target=self.target)  # noqa: TRY400
                await asyncio.sleep(self.deps.sql_retry_s)

    async def _restore_window(self) -> None:
        """Start the rate window from what the delivery log says went to this target lately (a restart)."""
        limit = self.limit
        if limit is None:
            return
        wall, mono = self.deps.wall(), self.deps.monotonic()
        since = wall - timedelta(seconds=span_s(limit))
        try:
            sent = await asyncio.to_thread(outbox.recent_sends, self.deps.engine, self.kind, self.target, since)
            started = await asyncio.to_thread(outbox.recent_starts, self.deps.engine, since)
        except Exception as exc:  # noqa: BLE001 - without the log the lane starts with an empty window, as before
            log.error("rate_window_not_restored", error=type(exc).__name__, channel=self.kind)  # noqa: TRY400
            return
        self.window = window_from(sent, started, wall, mono)

    @property
    def in_flight(self) -> int:
        return self.deps.in_flight.get(self.kind, 1)

    async def _round(self) -> None:
        """One step: wait for the head, or send the next message (one at a time, or beside the sends under way
        when the kind allows several in flight)."""
        one_at_a_time = self.in_flight == 1
        head = self._head() if one_at_a_time else self._free_head()
        if head is None:
            self.wake.clear()
            await self.wake.wait()
            return
        wait = self._wait_s(head)
        if not one_at_a_time:
            age_s = (self.deps.wall() - head.created_at).total_seconds()
            wait = max(wait, beside_wait_s(len(self.flying), age_s, self.deps.catch_up_s))
        if wait > 0:
            await self._sleep(wait)
            return
        batch, message = self._next_message(head)
        if len(batch) > 1 and message.data.get(DIGEST_ID) not in self.kept:
            await self._keep(batch, message)
        if one_at_a_time:
            await self._send(batch, message)
            return
        self.flying.update((i.notification_id, i.ticket_id) for i in batch)
        task = asyncio.get_running_loop().create_task(self._send_beside(batch, message))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def _free_head(self) -> OutboxItem | None:
        """With several sends in flight: the first item in planning order that is not under way and whose ticket
        has none under way (a ticket's messages keep their order); None when the lane is full or has none. A
        retried item that is not due yet still holds those behind it (as one at a time)."""
        if len(self.flying) >= self.in_flight:
            return None
        skipped: list[tuple[int, str]] = []
        found = None
        busy = set(self.flying.values())
        while self._heap:
            nid = self._heap[0][1]
            item = self.items.get(nid)
            if item is None:
                heapq.heappop(self._heap)
            elif nid in self.flying or item.ticket_id in busy:
                skipped.append(heapq.heappop(self._heap))
            else:
                found = item
                break
        for entry in skipped:
            heapq.heappush(self._heap, entry)
        return found

    async def _send_beside(self, batch: list[OutboxItem], message: Message) -> None:
        """One send beside the lane's loop; a fault is logged as a round's would be, and the lane is woken."""
        try:
            await self._send(batch, message)
        except Exception as exc:  # noqa: BLE001 - as in run(): the lane goes on
            log.error("lane_fault", error=type(exc).__name__, channel=self.kind, target=self.target)  # noqa: TRY400
        finally:
            for item in batch:
                self.flying.pop(item.notification_id, None)
            self.wake.set()

    def sends_under_way(self) -> list[asyncio.Task[None]]:
        return list(self._sending)

    def _next_message(self, head: OutboxItem) -> tuple[list[OutboxItem], Message]:
        """The head alone, the kept digest it is in, or — when more are due than the rate limit lets go one a
        message — a new digest of the first of them (``fold_size``; its message names it: ``data["digest_id"]``,
        kept by ``_keep`` before it goes)."""
        limit = self.limit
        if limit is None:
            return [head], message_from_json(head.payload)
        now = self.deps.monotonic()
        self.window, took = take(self.window, limit, now)
        self._taken_at = now if took else None
        digest_id = self.kept_of.get(head.notification_id)
        if digest_id is not None:
            kept = self.kept[digest_id]
            ids = digest_members(kept)
            held = [self.items[nid] for nid in ids if nid in self.items]
            if len(held) == len(ids):
                return held, kept
            self._unkeep(digest_id)  # not all here (a bug elsewhere): its members are folded anew
        left = remaining(self.window, limit, now)
        if head.kind in UNFOLDED or left >= len(self.items) - 1:  # all that is held fits, a message each
            return [head], message_from_json(head.payload)
        # a redraw is never folded (it changes a message in place instead of adding one), nor a handover digest
        # (its ticket list would shrink to its subject line), nor a member of a kept digest (it goes in that one)
        wall = self.deps.wall()
        foldable = [
            i
            for i in self._ordered()
            if i.due_at <= wall and i.kind not in UNFOLDED and i.notification_id not in self.kept_of
        ]
        due = [i for i in foldable if same_source(i, head)][: fold_size(len(foldable), left)]
        if len(due) > 1:
            members, digest = fold(due, digest_budget(self.deps.max_bytes.get(self.kind, 4000)))
            self.deps.on_digest(self.kind, len(members))
            return members, replace(digest, data={**digest.data, DIGEST_ID: f"dg-{secrets.token_hex(8)}"})
        return [head], message_from_json(head.payload)

    async def _keep(self, batch: list[OutboxItem], message: Message) -> None:
        """A new digest is kept in the outbox with its members before it goes: a notifier that dies while it is
        on its way sends it again as it was (once), not its members folded anew into other messages."""
        digest_id = str(message.data[DIGEST_ID])
        ids = [i.notification_id for i in batch]
        unsaved = [i for i in batch if self.is_unsaved(i)]
        self.release(unsaved)  # from now on in the outbox: a checkpoint no longer holds their event
        digest = Digest(digest_id, self.kind, self.target, message_to_json(message), self.deps.wall())
        await self.writer.submit(Keep(digest, unsaved))
        if all(nid in self.items for nid in ids):  # none revoked meanwhile (the new owner has it from the outbox)
            self.kept[digest_id] = message
            self.kept_of.update(dict.fromkeys(ids, digest_id))

    async def _send(self, batch: list[OutboxItem], message: Message) -> None:
        channel = self.deps.channels.get(self.kind)
        try:
            if channel is None:
                raise DeliveryError(f"no channel of kind {self.kind!r} is configured", retryable=False)
            self.writer.sending_one()
            try:
                await channel.send(message, self.target)
            finally:  # counted in the rate window from its answer (or failure), the latest the vendor can count it
                self.writer.sent()
                taken, self._taken_at = self._taken_at, None
                if taken is not None:
                    self.window = answered(self.window, taken, self.deps.monotonic())
        except DeliveryError as exc:
            await self._failed(batch, str(exc), exc.retryable, exc.retry_after_s)
            return
        except Exception as exc:  # noqa: BLE001 - a channel's bug must not stop the lane: retried, logged
            # the class only: an error's text (httpx's) can carry the webhook URL, which is the secret
            log.error("channel_error", error=type(exc).__name__, channel=self.kind, target=self.target)  # noqa: TRY400
            await self._failed(batch, f"{self.kind} {self.target}: {type(exc).__name__}", True, None)
            return
        self.breaker = breaker_success(self.breaker)
        now = self.deps.wall()
        digest = len(batch) > 1
        records = [
            record(i, "sent", i.attempts + 1, f"in a digest of {len(batch)}" if digest else "", now) for i in batch
        ]
        ids = [i.notification_id for i in batch]
        self.release(batch)  # a checkpoint from now on must not bring them back as pending
        # the lane's next send waits for this write: made at once when there is one, else it may gather others
        self.writing += 1
        try:
            await self.writer.finish(ids, records, hurry=len(self.items) > len(batch))
        finally:
            self.writing -= 1
        self._forget(batch)
        if digest:
            self._dropped(message.data.get(DIGEST_ID))

    async def _failed(self, batch: list[OutboxItem], error: str, retryable: bool, retry_after_s: float | None) -> None:
        self.breaker = breaker_failure(self.breaker, self.deps.breaker, self.deps.monotonic())
        now = self.deps.wall()
        log.warning(
            "delivery_failed",
            channel=self.kind,
            target=self.target,
            error=error,
            retryable=retryable,
            notifications=len(batch),
            breaker=self.breaker.state,
        )
        for item in batch:
            nid = item.notification_id
            if nid not in self.items:
                continue  # its partition was revoked during the send: its new owner has it from the outbox
            unsaved = self.is_unsaved(item)
            self.release([item])
            later = next_attempt(item, self.deps.retry, now, error, retry_after_s, 0.5 + self.deps.jitter() / 2)
            if retryable and later is not None:
                op = Save([later]) if unsaved else Reschedule(nid, later.due_at, later.attempts, error)
                await self.writer.submit(op)
                if nid in self.items:  # not revoked meanwhile
                    self.items[nid] = later
                continue
            why = error if not retryable else f"gave up after {item.attempts + 1} attempts: {error}"
            failed = record(item, "failed", item.attempts + 1, why, now)
            if unsaved:
                self.writer.submit(Save([item]))
            await self.writer.submit(GiveUp(failed))
            self._forget([item])
            self._dropped(self.kept_of.get(nid))  # no longer kept: its members still waiting are folded anew
            try:  # the delivery log's record is told even when the dead letter could not be
                await self.deps.on_give_up(replace(item, last_error=why), why)
            finally:
                await self.deps.on_records([failed])

    def _dropped(self, digest_id: object) -> None:
        """A kept digest delivered or given up: no longer kept (written after its members' finish, in order); a
        message or item that is in none: nothing."""
        if isinstance(digest_id, str) and digest_id in self.kept:
            self._unkeep(digest_id)
            self.writer.submit(Drop(digest_id))

    def _forget(self, batch: Iterable[OutboxItem]) -> None:
        for item in batch:
            self.items.pop(item.notification_id, None)
            self.finished.add(item.notification_id)


class Writer:
    """The notifier's one writer to the outbox and the delivery log: what every lane and the batch handler queue
    is written in one transaction per round, in the order queued. One SQL commit per notification was the
    notifier's largest cost, and writers in several threads queued on SQLite's single write lock (its busy
    handler sleeps 1, 2, 5, 10 ms and more). The delivery records then go to ``on_records`` (the deliveries topic,
    metrics) from a task of their own, in order, so a round's write never waits for the broker's answer about the
    previous one.

    On SQLite, writes that find the writer idle (nothing queued, no round in flight) are made in place, together:
    a paced stream's lane then waits neither for the writer's turn on the loop nor for a worker thread. A write a
    lane needs before its next send (``hurry``) goes at the end of the loop's turn in which no other lane's send
    is in flight any more, at the latest after ``GATHER_S``: the lanes an event reached answer within a
    millisecond or two of each other and share one transaction, instead of one each (a commit costs more than
    the records in it). A write that nobody needs soon (``hurry=False``: its lane has nothing else to send) waits
    up to ``GATHER_S`` for others. Under load the writes queue and go in rounds again; either way they are written
    in the order they were asked for.

    With a journal (a SQLite database file: shared/store/journal.py) a send's outcome is journaled the moment it
    comes and the lane goes on at once; every write then queues, in order, and the finishes go to the database
    in rounds at most ``JOURNAL_ROUND_S`` apart (a write someone waits for, a save or a barrier, starts a round
    at once). bench/notify_fanout at the same paced 2,200 notifications a second: p99 22, 31 and 68 ms against 26,
    82, 228 and 4,489 ms in lockstep; the burst 3,690-3,940 a second against 2,560-3,200.
    """

    def __init__(self, deps: LaneDeps) -> None:
        self.deps = deps
        self._own_sql = deps.sql is None
        self.sql = deps.sql if deps.sql is not None else SqlRunner(deps.engine)
        self._waiting: list[tuple[Op | None, asyncio.Future[None]]] = []
        self._busy = False
        """A round is being written."""
        self._soon: list[tuple[Op | None, asyncio.Future[None]]] = []
        """Writes to make in place (``_flush_soon``): at the end of this turn of the loop, or when gathered."""
        self._flush_now = False
        """``_flush_soon`` is due at the end of this turn."""
        self._gather: asyncio.TimerHandle | None = None
        """``_flush_soon`` is due when the gathering time is up."""
        self._hurried = False
        """A write gathering in place holds a lane's next send: written once no other send is in flight."""
        self.sending = 0
        """Sends in flight in the lanes: their answers, due soon, share the transaction of a hurried write."""
        self._wake = asyncio.Event()
        self._written: list[Delivery] = []
        self._publish = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.publisher: asyncio.Task[None] | None = None
        self.journal = deps.journal
        self._round: asyncio.TimerHandle | None = None
        """The next round of journaled finishes is due."""

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.task is None:
            self.task = loop.create_task(self.run(), name="outbox writer", context=contextvars.Context())
            self.publisher = loop.create_task(self.publish(), name="delivery records", context=contextvars.Context())

    def submit(self, op: Op | None, *, hurry: bool = True) -> asyncio.Future[None]:
        """Queue a write for the next round; the future is done once it is written (``None``: a barrier, done
        once everything queued before it is). ``hurry=False``: a write in place may wait ``GATHER_S`` for others."""
        loop = asyncio.get_running_loop()
        self._start(loop)
        done: asyncio.Future[None] = loop.create_future()
        if self.journal is None and not self._waiting and not self._busy and self.sql.in_place is not None:
            self._soon.append((op, done))
            self._hurried = self._hurried or hurry
            self._schedule(loop)
            return done
        self._waiting.append((op, done))
        self._wake.set()
        return done

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """When the writes in place go: at the end of this turn when one is hurried and no send is in flight (its
        answer would want a transaction of its own a moment later), else when the gathering time is up."""
        if self._hurried and self.sending == 0:
            self._flush_this_turn()
        elif not self._flush_now and self._gather is None:
            self._gather = loop.call_later(GATHER_S, self._flush_soon, context=contextvars.Context())

    def hurry(self) -> None:
        """What gathers is written as soon as no send is in flight (a lane waiting on it has something to send)."""
        if self._soon:
            self._hurried = True
            self._schedule(asyncio.get_running_loop())

    def sending_one(self) -> None:
        """A lane's send is under way (its answer may share the transaction of a hurried write)."""
        self.sending += 1

    def sent(self) -> None:
        """A lane's send is answered (or failed): the last one in flight lets a hurried write go."""
        self.sending -= 1
        if self.sending == 0 and self._hurried and self._soon:
            self._flush_this_turn()

    def _flush_this_turn(self) -> None:
        if not self._flush_now:
            self._flush_now = True
            asyncio.get_running_loop().call_soon(self._flush_soon, context=contextvars.Context())

    def _flush_soon(self) -> None:
        """The writes asked for in place so far, in one transaction; when that cannot be (a lock held elsewhere,
        an error), they go first in the writer's next round."""
        self._flush_now = False
        self._hurried = False
        if self._gather is not None:
            self._gather.cancel()
            self._gather = None
        group, self._soon = self._soon, []
        if not group:
            return
        ops = [op for op, _ in group if op is not None]
        if self._waiting or self._busy or (ops and not self.sql.now(outbox.write, ops)):
            self._waiting[:0] = group
            self._wake.set()
            return
        self._done(group, ops)

    def _done(self, group: list[tuple[Op | None, asyncio.Future[None]]], ops: list[Op]) -> None:
        """The group's writes are in: its futures done, its delivery records handed to ``publish``."""
        for _, done in group:
            if not done.done():
                done.set_result(None)
        records = [r for op in ops if isinstance(op, Finish) for r in op.records]
        if records:
            self._written.extend(records)
            self._publish.set()

    def finish(self, ids: list[str], records: list[Delivery], *, hurry: bool = True) -> asyncio.Future[None]:
        """Sent (or muted): the rows leave the outbox, the records enter the delivery log and are told. With a
        journal, the future is done once the finish is journaled (at once): the database gets it in a round."""
        if self.journal is None:
            return self.submit(Finish(ids, records), hurry=hurry)
        loop = asyncio.get_running_loop()
        self._start(loop)
        op = Finish(ids, records)
        try:
            self.journal.append(op)
        except OSError as exc:  # a full or read-only disk: this one waits for the database instead
            log.error("journal_write_failed", error=type(exc).__name__)  # noqa: TRY400
            return self.submit(op)
        self._waiting.append((op, loop.create_future()))
        if self._round is None:
            self._round = loop.call_later(JOURNAL_ROUND_S, self._round_due, context=contextvars.Context())
        done: asyncio.Future[None] = loop.create_future()
        done.set_result(None)
        return done

    def _round_due(self) -> None:
        self._round = None
        self._wake.set()

    def barrier(self) -> asyncio.Future[None]:
        return self.submit(None)

    async def recover(self) -> int:
        """Before anything is loaded or sent: what a notifier that is gone journaled and may not have written is
        written to the database (its sends then count as sent); returns how many finishes."""
        if self.journal is None:
            return 0
        files = await asyncio.to_thread(self.journal.recover)
        ops: list[Op] = [op for _, _, found in files for op in found]
        try:
            if ops:
                await asyncio.to_thread(outbox.write, self.deps.engine, ops)
        except BaseException:
            Journal.release(files)  # kept for the next start
            raise
        Journal.forget(files)
        return len(ops)

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            group, self._waiting = self._waiting, []
            if not group:
                continue
            # what the journal held when the round began: every finish in it is in the group or was written before
            generation, appended = (self.journal.generation, self.journal.appended) if self.journal else (0, 0)
            ops = [op for op, _ in group if op is not None]
            self._busy = True
            try:
                while ops:
                    try:
                        await self.sql(outbox.write, ops)
                        break
                    except Exception as exc:  # noqa: BLE001 - the database is down or locked: wait and try again
                        log.error("outbox_write_failed", error=type(exc).__name__, writes=len(ops))  # noqa: TRY400
                        await asyncio.sleep(self.deps.sql_retry_s)
            finally:
                self._busy = False
            if self.journal is not None and appended:
                self.journal.applied(generation, all_of_it=appended == self.journal.appended)
            self._done(group, ops)

    async def publish(self) -> None:
        """Tell ``on_records`` of what was written, every round waiting meanwhile at once, in order."""
        while True:
            await self._publish.wait()
            self._publish.clear()
            records, self._written = self._written, []
            if not records:
                continue
            try:
                await self.deps.on_records(records)
            except Exception as exc:  # noqa: BLE001 - the delivery log in SQL has them; the topic copy is best effort
                log.error("delivery_records_not_published", error=type(exc).__name__, records=len(records))  # noqa: TRY400

    async def stop(self) -> None:
        """Write what is queued (bounded: the database may be gone), stop, and tell what was written and not yet
        told once more (bounded: the broker may be gone)."""
        if self.task is not None and (self._waiting or self._busy or self._soon):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self.barrier()), timeout=5.0)
        tasks = [t for t in (self.task, self.publisher) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        records, self._written = self._written, []
        if records:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.deps.on_records(records), timeout=5.0)
        if self._round is not None:
            self._round.cancel()
            self._round = None
        if self.journal is not None:
            self.journal.close()
        if self._own_sql:
            self.sql.dispose()


async def _then(done: Awaitable[None], caps: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    await done
    return caps


class Dispatcher:
    """The lanes of one notifier worker, by (channel kind, target), and their group writer."""

    def __init__(self, deps: LaneDeps) -> None:
        self.deps = deps
        self.lanes: dict[tuple[str, str], Lane] = {}
        self.writer = Writer(deps)

    def submit(self, items: Iterable[OutboxItem], saved: bool = True) -> None:
        """Hand items to their lanes; ``saved=False``: not in the outbox (yet), so a lane sends them first and
        ``checkpoint`` keeps in the outbox those still held when their event's offset is to be committed."""
        by_lane: dict[tuple[str, str], list[OutboxItem]] = {}
        for item in items:
            by_lane.setdefault((item.channel, item.target), []).append(item)
        for key, found in by_lane.items():
            lane = self.lanes.get(key)
            if lane is None:
                lane = self.lanes[key] = Lane(key[0], key[1], self.deps, self.writer)
                # a context of its own: a lane's sends are no part of the event that happened to start it
                lane.task = asyncio.get_running_loop().create_task(
                    lane.run(), name=f"lane {key[0]} {key[1]}", context=contextvars.Context()
                )
            lane.add(found, saved)

    def checkpoint(self) -> asyncio.Future[dict[tuple[str, int], int]]:
        """Before offsets are committed: the items held and not in the outbox that have waited ``hold_s`` are
        written to it (as they stand now: a retried one with its attempts), after every write queued so far.
        Done once all that is written, with where each partition's commit must stop for the younger ones
        (``at_commit``); up to there, the events handled so far may count as handled."""
        held = [items for lane in self.lanes.values() for items in lane.held_only()]
        plan = at_commit(held, self.deps.wall(), self.deps.hold_s)
        for item in plan.save:  # from now on they count as saved
            self.lanes[(item.channel, item.target)].release([item])
        if plan.save:
            self.writer.submit(Save(plan.save))
        return asyncio.ensure_future(_then(self.writer.barrier(), plan.caps))

    async def assign(self, partitions: Iterable[tuple[str, int]]) -> int:
        """Load what the outbox holds for newly assigned partitions, and the digests kept with their items (each
        goes again as it was); returns how many items."""
        found = await asyncio.to_thread(outbox.pending, self.deps.engine, list(partitions))
        try:
            kept = await asyncio.to_thread(outbox.digests, self.deps.engine, [i.notification_id for i in found])
        except Exception as exc:  # noqa: BLE001 - without them the items go as before: folded anew
            log.error("kept_digests_not_loaded", error=type(exc).__name__)  # noqa: TRY400
            kept = []
        self.submit(found)
        for digest in kept:  # in the same turn: no lane has run since its items came
            lane = self.lanes.get((digest.channel, digest.target))
            if lane is not None and lane.keep_loaded(digest):
                log.info("digest_kept", channel=digest.channel, notifications=len(digest.members))
        try:
            await asyncio.to_thread(outbox.forget_done_digests, self.deps.engine)
        except Exception as exc:  # noqa: BLE001 - the next assignment tries again; the rows only wait meanwhile
            log.warning("done_digests_not_deleted", error=type(exc).__name__)
        return len(found)

    def revoke(self, partitions: Iterable[tuple[str, int]]) -> None:
        gone = set(partitions)
        for lane in self.lanes.values():
            lane.drop(gone)

    async def redrive(self, partitions: Iterable[tuple[str, int]]) -> int:
        found = await asyncio.to_thread(outbox.take_redriven, self.deps.engine, list(partitions))
        for lane in self.lanes.values():
            for item in found:
                lane.finished.discard(item.notification_id)
        self.submit(found)
        return len(found)

    def pending(self) -> dict[str, int]:
        """Items held per channel kind (a gauge)."""
        counts: dict[str, int] = {}
        for (kind, _), lane in self.lanes.items():
            counts[kind] = counts.get(kind, 0) + len(lane.items)
        return counts

    def open_breakers(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for (kind, _), lane in self.lanes.items():
            counts[kind] = counts.get(kind, 0) + (lane.breaker.state == "open")
        return counts

    async def stop(self) -> None:
        tasks = [lane.task for lane in self.lanes.values() if lane.task is not None]
        tasks += [task for lane in self.lanes.values() for task in lane.sends_under_way()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.writer.stop()  # what the lanes queued is written: fewer repeats after a restart
