"""The notifier's lanes, with a fake channel and a real SQLite outbox: no send waits for another target, a
target's backlog under its rate limit becomes digests, failures are retried from the outbox exactly once, and
what is given up is kept for a redrive."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Sequence
from dataclasses import replace as dataclass_replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from services.notifier import lanes
from services.notifier.channels.base import DeliveryError, Message, RateLimit
from services.notifier.channels.registry import REGISTRY
from services.notifier.lanes import Dispatcher, Lane, LaneDeps, Recent, Writer
from services.notifier.stages import (
    DIGEST_ID,
    BreakerPolicy,
    RetryPolicy,
    Window,
    beside_wait_s,
    digest_budget,
    digest_members,
    fold,
    fold_size,
    message_to_json,
    record,
    remaining,
    window_from,
)
from shared.events import Delivery
from shared.store import db, outbox
from shared.store.outbox import Digest, Keep, OutboxItem
from shared.store.runner import SqlRunner
from tests.fakes import FakeChannel


class Sinks:
    def __init__(self) -> None:
        self.records: list[Delivery] = []
        self.given_up: list[tuple[OutboxItem, str]] = []

    async def on_records(self, records: Sequence[Delivery]) -> None:
        self.records.extend(records)

    async def on_give_up(self, item: OutboxItem, reason: str) -> None:
        self.given_up.append((item, reason))


def deps(engine: Engine, channel: FakeChannel, sinks: Sinks, **over: object) -> LaneDeps:
    base = LaneDeps(
        channels={"fake": channel},
        limits={"fake": None},
        max_bytes={"fake": 4000},
        engine=engine,
        retry=RetryPolicy(base_s=0.01, max_s=0.05, give_up_s=3600.0),
        breaker=BreakerPolicy(failures=2, open_s=0.05, max_open_s=0.1),
        on_records=sinks.on_records,
        on_give_up=sinks.on_give_up,
        jitter=lambda: 1.0,
        sql_retry_s=0.01,
    )
    for k, v in over.items():
        setattr(base, k, v)
    return base


def items(target: str, n: int, start: int = 0) -> list[OutboxItem]:
    now = datetime.now(UTC)
    return [
        OutboxItem(
            notification_id=f"{target}-{i}",
            seq=i,
            ticket_id=f"tl-{i}",
            team="operations",
            channel="fake",
            target=target,
            kind="assignment",
            payload=message_to_json(Message("assignment", f"[P1] New ticket tl-{i}", "text")),
            source_topic="tickets",
            source_partition=0,
            created_at=now,
            due_at=now,
        )
        for i in range(start, start + n)
    ]


async def until(what: str, probe: Callable[[], bool], limit_s: float = 20.0) -> None:
    """Wait for a condition (the limit only stops a hung test)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not probe():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.005)


class GatedRounds(SqlRunner):
    """The writer's rounds (not its writes in place) wait for ``gate``: a round in flight, held."""

    def __init__(self, engine: Engine, gate: asyncio.Event) -> None:
        super().__init__(engine)
        self.gate = gate

    async def __call__(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        await self.gate.wait()
        return await super().__call__(fn, *args, **kwargs)


def delivered_ids(channel: FakeChannel) -> list[str]:
    """Every notification the fake received, a digest's members each counted once."""
    found = []
    for message, target in channel.delivered:
        members = message.data.get("digest")
        if isinstance(members, list):
            found += [str(m) for m in members]
        else:
            found.append(f"{target}-{message.subject.split('tl-')[1]}")
    return found


async def test_a_dead_target_holds_only_its_own_lane_and_gets_everything_once_when_it_returns(engine: Engine) -> None:
    channel, sinks = FakeChannel(), Sinks()
    channel.down.add("dead")
    dispatcher = Dispatcher(deps(engine, channel, sinks))
    try:
        for batch in (items("dead", 5), items("live", 5)):
            dispatcher.submit(outbox.add(engine, batch))
        await until("the live target's five", lambda: sum(r.recipient == "live" for r in sinks.records) == 5)
        await until("the breaker to open", lambda: dispatcher.open_breakers().get("fake") == 1)
        assert not [t for _, t in channel.delivered if t == "dead"]
        assert {i.notification_id for i in outbox.pending(engine, [("tickets", 0)])} == {f"dead-{i}" for i in range(5)}
        channel.down.clear()
        await until("the dead target's five", lambda: sum(r.recipient == "dead" for r in sinks.records) == 5)
    finally:
        await dispatcher.stop()
    assert sorted(delivered_ids(channel)) == sorted([f"dead-{i}" for i in range(5)] + [f"live-{i}" for i in range(5)])
    assert outbox.pending(engine, [("tickets", 0)]) == []
    assert all(db.was_delivered(engine, f"dead-{i}") for i in range(5))
    assert [m.subject for m, t in channel.delivered if t == "dead"] == [f"[P1] New ticket tl-{i}" for i in range(5)]


async def test_a_backlog_over_the_rate_limit_arrives_as_digests_nothing_dropped_nothing_twice(engine: Engine) -> None:
    channel, sinks = FakeChannel(), Sinks()
    dispatcher = Dispatcher(deps(engine, channel, sinks, limits={"fake": RateLimit(2, 0.2)}))
    try:
        dispatcher.submit(outbox.add(engine, items("chat", 40)))
        await until("every notification recorded", lambda: len(sinks.records) >= 40)
    finally:
        await dispatcher.stop()
    assert sorted(delivered_ids(channel)) == sorted(f"chat-{i}" for i in range(40))
    digests = [m for m, _ in channel.delivered if m.kind == "digest"]
    assert digests, "the backlog was folded"
    assert len(channel.delivered) < 40
    assert {r.notification_id for r in sinks.records if r.status == "sent"} == {f"chat-{i}" for i in range(40)}


async def test_a_backlog_goes_as_digests_on_every_message_the_limit_has_now_not_a_window_later(
    engine: Engine,
) -> None:
    """60 held for a target whose limit is 4 messages a minute (the lane's start takes one: ``window_from``) and
    whose digest holds about 14: the three messages the window has go at once, each a full digest, and the rest
    wait for the window. One notification a message until the last token would have sent 2 alone and one digest
    (2 + 14 at most), the rest a minute later."""
    channel, sinks = FakeChannel(), Sinks()
    over = {"limits": {"fake": RateLimit(4, 60.0)}, "max_bytes": {"fake": 500}}
    cap = len(fold(items("chat", 60), digest_budget(500))[0])
    dispatcher = Dispatcher(deps(engine, channel, sinks, **over))

    def members() -> list[int]:
        return [len(digest_members(m)) or 1 for m, _ in channel.delivered]  # one alone: 1

    try:
        dispatcher.submit(outbox.add(engine, items("chat", 60)))
        await until("three messages recorded", lambda: len(members()) == 3 and len(sinks.records) == sum(members()))
        sent = sum(members())
        assert min(members()) > cap - 3, f"each a full digest: {members()}"
        assert sent > 2 + cap, "more than one notification a message until the last token could have sent"
        assert [r.notification_id for r in sinks.records] == [f"chat-{i}" for i in range(sent)], "in order"
        assert dispatcher.pending() == {"fake": 60 - sent}
    finally:
        await dispatcher.stop()
    assert len(channel.delivered) == 3, "the limit's three messages, no more"


def test_a_message_carries_alone_what_fits_the_limit_and_folds_the_excess() -> None:
    assert [fold_size(due, 19) for due in (1, 19, 20, 21, 166)] == [1, 1, 1, 2, 147]
    assert fold_size(5, 0) == 5, "the last message of the window folds all that is due"


async def test_a_permanent_failure_is_given_up_kept_and_redriven(engine: Engine) -> None:
    channel, sinks = FakeChannel([DeliveryError("fake x: HTTP 404", retryable=False)]), Sinks()
    dispatcher = Dispatcher(deps(engine, channel, sinks))
    try:
        dispatcher.submit(outbox.add(engine, items("x", 1)))
        await until("the give-up", lambda: bool(sinks.given_up))
        assert sinks.given_up[0][1] == "fake x: HTTP 404"
        assert [i.notification_id for i in outbox.failed(engine)] == ["x-0"]
        assert [r.status for r in sinks.records] == ["failed"]
        assert outbox.redrive(engine, "x-0", datetime.now(UTC))
        assert not outbox.redrive(engine, "x-0", datetime.now(UTC)), "only a failed item is redriven"
        assert await dispatcher.redrive([("tickets", 0)]) == 1
        await until("the redriven send recorded", lambda: [r.status for r in sinks.records] == ["failed", "sent"])
    finally:
        await dispatcher.stop()
    assert outbox.failed(engine) == [] and db.was_delivered(engine, "x-0")


async def test_a_give_up_whose_dead_letter_cannot_be_written_is_still_recorded(engine: Engine) -> None:
    """The dead-letter topic is away when a notification is given up: its failed record still reaches the
    delivery log's listeners (the deliveries topic, the metrics), and the outbox keeps it for a redrive."""

    class NoDeadLetters(Sinks):
        async def on_give_up(self, item: OutboxItem, reason: str) -> None:
            await super().on_give_up(item, reason)
            raise ConnectionError("the broker is away")

    channel, sinks = FakeChannel([DeliveryError("fake x: HTTP 404", retryable=False)]), NoDeadLetters()
    dispatcher = Dispatcher(deps(engine, channel, sinks))
    try:
        dispatcher.submit(outbox.add(engine, items("x", 1)))
        await until("the give-up recorded", lambda: [r.status for r in sinks.records] == ["failed"])
    finally:
        await dispatcher.stop()
    assert [i.notification_id for i in outbox.failed(engine)] == ["x-0"]


async def test_a_notification_given_up_for_its_age_gets_a_whole_new_window_when_redriven(engine: Engine) -> None:
    channel, sinks = FakeChannel(), Sinks()
    channel.down.add("late")
    # the redriven one's new window (give_up_s) must outlast two failed tries and the test's turn to bring the
    # channel back: 0.3 s was once not enough on a machine busy with a benchmark
    dispatcher = Dispatcher(deps(engine, channel, sinks, retry=RetryPolicy(0.01, 0.02, give_up_s=1.0)))
    try:
        dispatcher.submit(outbox.add(engine, items("late", 1)))
        await until("the give-up", lambda: len(sinks.given_up) == 1)
        assert outbox.redrive(engine, "late-0", datetime.now(UTC))
        before = len(channel.attempts)
        await dispatcher.redrive([("tickets", 0)])
        await until("two failed tries after the redrive", lambda: len(channel.attempts) >= before + 2)
        channel.down.clear()
        await until("the redriven send recorded", lambda: [r.status for r in sinks.records][-1:] == ["sent"])
    finally:
        await dispatcher.stop()
    assert len(sinks.given_up) == 1, "the redriven one was retried in its new window, not given up at once"


async def test_retries_stop_at_the_give_up_time(engine: Engine) -> None:
    channel, sinks = FakeChannel(), Sinks()
    channel.down.add("gone")
    dispatcher = Dispatcher(deps(engine, channel, sinks, retry=RetryPolicy(0.01, 0.02, give_up_s=0.2)))
    try:
        dispatcher.submit(outbox.add(engine, items("gone", 2)))
        await until("both given up", lambda: len(sinks.given_up) == 2)
    finally:
        await dispatcher.stop()
    assert all(reason.startswith("gave up after") for _, reason in sinks.given_up)
    assert len(outbox.failed(engine)) == 2


async def test_what_the_outbox_holds_is_sent_by_the_worker_assigned_its_partition(engine: Engine) -> None:
    """A worker that died after the outbox took the notifications: the next one loads and sends them."""
    outbox.add(engine, items("later", 3))
    assert outbox.add(engine, items("later", 3)) == [], "a replayed event adds nothing twice"
    channel, sinks = FakeChannel(), Sinks()
    dispatcher = Dispatcher(deps(engine, channel, sinks))
    try:
        assert await dispatcher.assign([("tickets", 1)]) == 0, "another partition's rows stay"
        assert await dispatcher.assign([("tickets", 0)]) == 3
        await until("the three", lambda: len(channel.delivered) == 3)
        await until(
            "the three sent and let go", lambda: len(sinks.records) == 3 and dispatcher.pending() == {"fake": 0}
        )
        dispatcher.submit(items("later", 3))  # a reload racing with the sends brings nothing back
        assert dispatcher.pending() == {"fake": 0}
    finally:
        await dispatcher.stop()
    assert len(channel.delivered) == 3
    assert outbox.add(engine, items("later", 3)) == [], "delivered: a replay adds nothing"


async def test_a_fault_in_a_callback_does_not_silence_the_target(engine: Engine) -> None:
    """The deliveries topic unreachable for a moment (its callback raises): the lane logs it and goes on."""
    channel, sinks = FakeChannel(), Sinks()
    faults = [RuntimeError("broker down")]

    async def flaky(records: Sequence[Delivery]) -> None:
        if faults:
            raise faults.pop()
        await sinks.on_records(records)

    dispatcher = Dispatcher(deps(engine, channel, sinks, on_records=flaky))
    try:
        dispatcher.submit(outbox.add(engine, items("t", 1)))
        await until("the first send", lambda: len(channel.delivered) == 1 and not faults)
        dispatcher.submit(outbox.add(engine, items("t", 1, start=1)))
        await until("the second send recorded", lambda: len(sinks.records) == 1)
    finally:
        await dispatcher.stop()
    assert [m.subject for m, _ in channel.delivered] == ["[P1] New ticket tl-0", "[P1] New ticket tl-1"]
    assert outbox.pending(engine, [("tickets", 0)]) == [], "the first was finished before its callback failed"


async def test_a_restarted_lane_starts_its_rate_window_from_the_delivery_log(engine: Engine) -> None:
    """A restarted worker must not send a vendor's whole limit again at once (DingTalk mutes a robot for ten
    minutes when it does): the window starts from the sends the delivery log has."""
    limit = RateLimit(2, 60.0)
    now = datetime.now(UTC)
    sent = [
        Delivery(
            notification_id=f"old-{i}",
            ticket_id=f"tl-{i}",
            kind="assignment",
            channel="fake",
            recipient="chat",
            status="sent",
            attempts=1,
            error="in a digest of 2" if i else "",
            at=now - timedelta(seconds=10 if i < 2 else 5),
        )
        for i in range(3)
    ]
    outbox.write(engine, [outbox.Finish([], sent)])  # two messages: a digest of two at -10 s, one at -5 s
    lanes = Dispatcher(deps(engine, FakeChannel(), Sinks(), limits={"fake": limit}))
    lane = Lane("fake", "chat", lanes.deps, lanes.writer)
    await lane._restore_window()
    assert len(lane.window.sent) == 3, "the two in the log, and one the dead worker may not have written down"
    assert remaining(lane.window, limit, lane.deps.monotonic()) <= 0
    other = Lane("fake", "elsewhere", lanes.deps, lanes.writer)
    await other._restore_window()
    assert len(other.window.sent) == 1, "another target's sends do not count; its own unwritten one may"


def test_a_window_from_wall_times_keeps_their_spacing() -> None:
    wall = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    window = window_from([wall - timedelta(seconds=30), wall - timedelta(seconds=5)], [], wall, 1000.0)
    assert window == Window((970.0, 995.0, 1000.0))
    # nothing in the log: the dead worker's first send to the target may still have been in flight
    assert window_from([], [], wall, 1000.0) == Window((1000.0,))


def test_each_start_in_a_window_counts_one_message_the_worker_before_it_may_not_have_written_down() -> None:
    """Two kills within one window: each dead worker may have had a message on its way (helper-34: DingTalk
    refused the third copy of a message within 13 s and muted the robot for ten minutes)."""
    wall = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    starts = [wall - timedelta(seconds=6), wall - timedelta(seconds=1)]
    window = window_from([wall - timedelta(seconds=30)], starts, wall, 1000.0)
    assert window == Window((970.0, 994.0, 999.0))


async def test_a_restarted_lane_counts_the_notifier_starts_in_its_window(engine: Engine) -> None:
    now = datetime.now(UTC)
    outbox.record_start(engine, "start-old", now - timedelta(hours=2))
    outbox.record_start(engine, "start-a", now - timedelta(seconds=20))
    outbox.record_start(engine, "start-b", now - timedelta(seconds=2))
    limit = RateLimit(3, 60.0)
    lanes_ = Dispatcher(deps(engine, FakeChannel(), Sinks(), limits={"fake": limit}))
    lane = Lane("fake", "chat", lanes_.deps, lanes_.writer)
    await lane._restore_window()
    assert len(lane.window.sent) == 2, "the two starts of the last minute, not the one two hours ago"
    assert remaining(lane.window, limit, lane.deps.monotonic()) == 1
    outbox.record_start(engine, "start-c", now + timedelta(days=1, seconds=1))
    assert outbox.recent_starts(engine, now - timedelta(days=1)) == [now + timedelta(days=1, seconds=1)], (
        "a start older than a day is forgotten"
    )


async def test_a_lane_sends_its_next_message_only_once_the_last_outcome_is_written(engine: Engine) -> None:
    """A killed worker repeats at most one send a lane, and a restarted lane's rate window (from the delivery
    log) misses at most that one: a lane never runs ahead of the delivery log. (Letting the next send overlap the
    write was tried: the whole-loop chaos test then saw two repeats a lane, and DingTalk's 20-a-minute limit
    broken after a restart.)"""
    channel = FakeChannel()
    writes: list[tuple[list[str], asyncio.Future[None]]] = []

    class HeldWriter(Writer):
        def finish(self, ids: list[str], _records: list[Delivery], *, hurry: bool = True) -> asyncio.Future[None]:  # noqa: ARG002
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            writes.append((ids, done))
            return done

    lane_deps = deps(engine, channel, Sinks())
    lane = Lane("fake", "t", lane_deps, HeldWriter(lane_deps))
    lane.add(items("t", 2))
    task = asyncio.create_task(lane.run())
    try:
        await until("the first send's outcome queued", lambda: len(writes) == 1)
        for _ in range(20):  # the lane may run: it must not send the second
            await asyncio.sleep(0)
        assert len(channel.delivered) == 1
        writes[0][1].set_result(None)
        await until("the second send once the first outcome is written", lambda: len(channel.delivered) == 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_round_is_written_while_the_previous_one_is_still_being_published(engine: Engine) -> None:
    """The deliveries topic slow to answer: the delivery log's writes go on meanwhile (lanes wait for those
    only), and every record is published afterwards, in order."""
    release = asyncio.Event()
    published: list[str] = []

    async def slow(records: Sequence[Delivery]) -> None:
        await release.wait()
        published.extend(r.notification_id for r in records)

    dispatcher = Dispatcher(deps(engine, FakeChannel(), Sinks(), on_records=slow))
    writer = dispatcher.writer
    now = datetime.now(UTC)
    try:
        added = outbox.add(engine, items("t", 3))
        recs = [record(i, "sent", 1, "", now) for i in added]
        first = writer.finish([added[0].notification_id], recs[:1])
        await asyncio.wait_for(first, 20)
        rest = [writer.finish([i.notification_id], [r]) for i, r in zip(added[1:], recs[1:], strict=True)]
        await asyncio.wait_for(asyncio.gather(*rest), 20)  # written though the first round is not published
        assert outbox.pending(engine, [("tickets", 0)]) == []
        assert published == []
        release.set()
        await until("every record published", lambda: len(published) == 3)
        assert published == ["t-0", "t-1", "t-2"]
    finally:
        await dispatcher.stop()


async def test_a_checkpoint_while_a_sends_outcome_is_being_written_does_not_bring_it_back(engine: Engine) -> None:
    """Sent first, then a commit's checkpoint comes before the outcome is written: the checkpoint must not keep
    the sent item in the outbox (written after the outcome, it would be sent again by the next owner)."""
    gate = asyncio.Event()

    class GatedWriter(Writer):
        async def run(self) -> None:
            await gate.wait()
            await super().run()

    channel, sinks = FakeChannel(), Sinks()
    dispatcher = Dispatcher(deps(engine, channel, sinks))
    dispatcher.writer = GatedWriter(dispatcher.deps)
    dispatcher.writer.sql.in_place = None  # every write queued for a round (held by the gate)
    try:
        dispatcher.submit(items("t", 1), saved=False)
        await until("sent, its outcome queued", lambda: len(channel.delivered) == 1)
        written = dispatcher.checkpoint()
        gate.set()
        await asyncio.wait_for(written, 20)
        await until("recorded", lambda: len(sinks.records) == 1)
    finally:
        await dispatcher.stop()
    assert outbox.pending(engine, [("tickets", 0)]) == []
    assert db.was_delivered(engine, "t-0")


async def test_new_items_are_sent_first_and_only_those_still_held_at_a_checkpoint_are_written(engine: Engine) -> None:
    channel, sinks = FakeChannel(), Sinks()
    channel.down.add("dead")
    dispatcher = Dispatcher(deps(engine, channel, sinks, breaker=BreakerPolicy(failures=1, open_s=60, max_open_s=60)))
    try:
        dispatcher.submit(items("live", 3) + items("dead", 2), saved=False)
        await until("the live three recorded", lambda: len(sinks.records) == 3)
        await dispatcher.checkpoint()
        assert sorted(i.notification_id for i in outbox.pending(engine, [("tickets", 0)])) == ["dead-0", "dead-1"]
    finally:
        await dispatcher.stop()


def from_events(target: str, partition: int, offsets: list[int], age_s: float, seq: int) -> list[OutboxItem]:
    """Items sent first from the events at ``offsets`` of a partition, planned ``age_s`` ago, ``seq`` onwards."""
    planned = datetime.now(UTC) - timedelta(seconds=age_s)
    return [
        dataclass_replace(i, seq=seq + k, source_partition=partition, source_offset=o, created_at=planned)
        for k, (i, o) in enumerate(zip(items(target, len(offsets), seq), offsets, strict=True))
    ]


async def test_a_checkpoint_writes_the_held_items_that_waited_and_stops_each_partition_at_the_first_that_did_not(
    engine: Engine,
) -> None:
    channel, sinks = FakeChannel(), Sinks()
    channel.down.add("dead")
    dispatcher = Dispatcher(deps(engine, channel, sinks, breaker=BreakerPolicy(failures=1, open_s=60, max_open_s=60)))
    try:
        waited = from_events("dead", 0, [10, 11], 9.0, 0)  # the first is tried, fails and is kept (a retry)
        young = from_events("dead", 0, [12, 13], 1.0, 2) + from_events("dead", 1, [20, 21], 1.0, 4)
        live = from_events("live", 0, [30, 31, 32], 1.0, 6)
        dispatcher.submit(waited + young + live, saved=False)
        await until("the live three recorded", lambda: len(sinks.records) == 3)
        await until("the first kept for a retry", lambda: len(outbox.pending(engine, [("tickets", 0)])) == 1)
        caps = await dispatcher.checkpoint()
        assert caps == {("tickets", 0): 12, ("tickets", 1): 20}
        pending = outbox.pending(engine, [("tickets", 0), ("tickets", 1)])
        assert sorted(i.notification_id for i in pending) == ["dead-0", "dead-1"]
        assert await dispatcher.checkpoint() == caps  # nothing written twice, the same stops
        assert len(outbox.pending(engine, [("tickets", 0), ("tickets", 1)])) == 2
        assert dispatcher.lanes[("fake", "live")].unsaved == {}, "what was sent is no longer held"
    finally:
        await dispatcher.stop()


async def test_an_idle_writer_writes_in_place_together_and_a_busy_one_keeps_the_order(engine: Engine) -> None:
    """A paced stream's lanes do not wait for the writer's rounds: with nothing queued, what is asked for in one
    turn of the loop is written in place, in one transaction, at the end of it. While a round is queued, a later
    write goes after it (a checkpoint's save of an item and the item's finish must never swap)."""
    lane_deps = deps(engine, FakeChannel(), Sinks())
    lane_deps.sql = GatedRounds(engine, asyncio.Event())  # a round would never end: only writes in place do
    writer = Writer(lane_deps)
    now = datetime.now(UTC)
    first, second, third = items("t", 3)
    try:
        both = [
            writer.finish([first.notification_id], [record(first, "sent", 1, "", now)]),
            writer.submit(outbox.Save([second])),
        ]
        assert not any(f.done() for f in both), "made at the end of the turn"
        await asyncio.wait_for(asyncio.gather(*both), 20)
        assert db.was_delivered(engine, first.notification_id)
        assert [i.notification_id for i in outbox.pending(engine, [("tickets", 0)])] == ["t-1"]
        lane_deps.sql.gate.set()
        writer._waiting.append((outbox.Save([third]), asyncio.get_running_loop().create_future()))  # a round queued
        finished = writer.finish([third.notification_id], [record(third, "sent", 1, "", now)])
        await asyncio.wait_for(finished, 20)
    finally:
        await writer.stop()
        lane_deps.sql.dispose()
    assert [i.notification_id for i in outbox.pending(engine, [("tickets", 0)])] == ["t-1"]
    assert db.was_delivered(engine, third.notification_id)


class CountedInPlace(SqlRunner):
    """Counts the transactions made in place."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.transactions = 0

    def now(self, fn: Any, *args: Any, **kwargs: Any) -> bool:
        self.transactions += 1
        return super().now(fn, *args, **kwargs)


async def test_outcomes_nobody_waits_on_share_a_transaction_and_one_a_lane_waits_on_goes_at_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A paced stream's answers come one a turn of the loop: those whose lanes have nothing else to send gather
    into one transaction (about 100 µs of SQLite's commit each); one whose lane waits on it to send again is
    written at the end of its turn, with whatever gathered so far."""
    lane_deps = deps(engine, FakeChannel(), Sinks())
    counted = lane_deps.sql = CountedInPlace(engine)
    writer = Writer(lane_deps)
    now = datetime.now(UTC)
    found = items("t", 4)
    try:
        gathered = []
        for item in found[:3]:
            gathered.append(writer.finish([item.notification_id], [record(item, "sent", 1, "", now)], hurry=False))
            await asyncio.sleep(0)  # each answer in a turn of its own
        await asyncio.wait_for(asyncio.gather(*gathered), 20)
        assert counted.transactions == 1
        assert all(db.was_delivered(engine, i.notification_id) for i in found[:3])

        monkeypatch.setattr(lanes, "GATHER_S", 3600.0)  # from here on only a hurry writes
        late = writer.finish([found[3].notification_id], [record(found[3], "sent", 1, "", now)], hurry=False)
        assert not late.done()
        urgent = writer.barrier()  # as a finish whose lane has more to send: at the end of this turn
        for _ in range(3):
            await asyncio.sleep(0)
        assert late.done() and urgent.done(), "written with the urgent one, not after the gathering time"
        assert counted.transactions == 2
    finally:
        await writer.stop()
        counted.dispose()


async def test_a_write_a_lane_waits_on_goes_once_the_sends_in_flight_are_answered(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four lanes an event reached answer a moment apart: the first one's hurried write waits for the others'
    answers (one transaction for the four, not one each), and goes at the end of the turn of the last answer;
    with nothing in flight a hurried write goes at once."""
    monkeypatch.setattr(lanes, "GATHER_S", 3600.0)  # only the answers decide here
    lane_deps = deps(engine, FakeChannel(), Sinks())
    counted = lane_deps.sql = CountedInPlace(engine)
    writer = Writer(lane_deps)
    now = datetime.now(UTC)
    found = items("t", 5)
    try:
        writer.sending = 4  # four sends in flight
        written = []
        for item in found[:4]:
            writer.sent()
            written.append(writer.finish([item.notification_id], [record(item, "sent", 1, "", now)]))
            for _ in range(3):
                await asyncio.sleep(0)
            assert all(w.done() for w in written) == (item is found[3]), "written only once the last answered"
        assert counted.transactions == 1

        alone = writer.finish([found[4].notification_id], [record(found[4], "sent", 1, "", now)])
        for _ in range(3):
            await asyncio.sleep(0)
        assert alone.done() and counted.transactions == 2
    finally:
        await writer.stop()
        counted.dispose()


async def test_a_lane_with_more_to_send_asks_for_its_outcome_at_once(engine: Engine) -> None:
    channel = FakeChannel()
    hurried: list[bool] = []

    class Recording(Writer):
        def finish(self, ids: list[str], records: list[Delivery], *, hurry: bool = True) -> asyncio.Future[None]:
            hurried.append(hurry)
            return super().finish(ids, records, hurry=hurry)

    lane_deps = deps(engine, channel, Sinks())
    writer = Recording(lane_deps)
    lane = Lane("fake", "t", lane_deps, writer)
    lane.add(items("t", 2))
    task = asyncio.create_task(lane.run())
    try:
        await until("both sent and written", lambda: len(hurried) == 2 and not lane.items)
        assert hurried == [True, False]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await writer.stop()


async def test_a_new_item_for_a_lane_waiting_on_a_gathering_write_has_it_written_at_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lane had nothing else to send, so its outcome was left to gather; a new notification for it then
    comes: the write is made at once and the new one sent, not held for the gathering time."""
    monkeypatch.setattr(lanes, "GATHER_S", 3600.0)
    channel = FakeChannel()
    lane_deps = deps(engine, channel, Sinks())
    writer = Writer(lane_deps)
    lane = Lane("fake", "t", lane_deps, writer)
    first, second = items("t", 2)
    lane.add([first])
    task = asyncio.create_task(lane.run())
    try:
        await until("the first sent, its outcome gathering", lambda: lane.writing > 0)
        lane.add([second])
        await until("the second sent", lambda: len(channel.delivered) == 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await writer.stop()
    assert db.was_delivered(engine, first.notification_id)


async def test_a_lanes_rate_window_counts_a_send_from_its_answer(engine: Engine) -> None:
    clock = [100.0]

    class SlowVendor(FakeChannel):
        async def send(self, message: Message, target: str) -> None:
            clock[0] += 0.4  # the answer comes 0.4 s after the send started
            await super().send(message, target)

    channel = SlowVendor()
    lane_deps = deps(engine, channel, Sinks(), limits={"fake": RateLimit(4, 1.0)}, monotonic=lambda: clock[0])
    lane = Lane("fake", "t", lane_deps, Writer(lane_deps))
    lane.add(items("t", 1))
    task = asyncio.create_task(lane.run())
    try:
        await until("sent and written", lambda: not lane.items)
        # the start's one (a dead worker's send it may not have written down), then this one from its answer
        assert lane.window.sent == (100.0, 100.4)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await lane.writer.stop()


async def test_a_write_asked_for_while_a_round_is_in_flight_waits_for_that_round(engine: Engine) -> None:
    """A round saving an item is slow (the write lock held elsewhere sent it to a worker thread); the item's
    finish meanwhile must not be written in place ahead of it, or the save would bring a delivered item back."""
    gate = asyncio.Event()
    lane_deps = deps(engine, FakeChannel(), Sinks())
    lane_deps.sql = GatedRounds(engine, gate)
    writer = Writer(lane_deps)
    (item,) = items("t", 1)
    try:
        await writer.barrier()  # starts the writer
        writer._waiting.append((outbox.Save([item]), asyncio.get_running_loop().create_future()))
        writer._wake.set()
        await until("the round in flight", lambda: writer._busy)
        finished = writer.finish([item.notification_id], [record(item, "sent", 1, "", datetime.now(UTC))])
        assert not finished.done(), "queued behind the round in flight"
        gate.set()
        await asyncio.wait_for(finished, 20)
    finally:
        await writer.stop()
        lane_deps.sql.dispose()
    assert outbox.pending(engine, [("tickets", 0)]) == []
    assert db.was_delivered(engine, item.notification_id)


async def test_a_new_item_given_up_at_its_first_try_is_kept_for_a_redrive(engine: Engine) -> None:
    channel, sinks = FakeChannel([DeliveryError("fake x: HTTP 404", retryable=False)]), Sinks()
    dispatcher = Dispatcher(deps(engine, channel, sinks))
    try:
        dispatcher.submit(items("x", 1), saved=False)
        await until("the give-up", lambda: bool(sinks.given_up))
    finally:
        await dispatcher.stop()
    assert [(i.notification_id, i.last_error) for i in outbox.failed(engine)] == [("x-0", "fake x: HTTP 404")]
    assert outbox.redrive(engine, "x-0", datetime.now(UTC))


@pytest.mark.parametrize("retryable", [True, False])
async def test_a_send_that_fails_after_its_partition_was_revoked_is_left_to_the_new_owner(
    engine: Engine, retryable: bool
) -> None:
    """Neither retried nor given up here: the row stays pending for the partition's new owner."""
    gate = asyncio.Event()

    started = asyncio.Event()

    class Slow(FakeChannel):
        async def send(self, message: Message, target: str) -> None:
            started.set()
            await gate.wait()
            await super().send(message, target)

    channel, sinks = Slow([] if retryable else [DeliveryError("fake t: HTTP 404", retryable=False)]), Sinks()
    if retryable:
        channel.down.add("t")
    dispatcher = Dispatcher(deps(engine, channel, sinks))
    try:
        dispatcher.submit(outbox.add(engine, items("t", 1)))
        await asyncio.wait_for(started.wait(), 20)
        dispatcher.revoke([("tickets", 0)])
        gate.set()
        await until("the send failed", lambda: len(channel.attempts) == 1)
        await dispatcher.writer.barrier()
        assert dispatcher.pending() == {"fake": 0}, "the lane does not keep retrying what it no longer owns"
    finally:
        await dispatcher.stop()
    assert [r.notification_id for r in outbox.pending(engine, [("tickets", 0)])] == ["t-0"]
    assert sinks.given_up == []


async def test_stopping_waits_for_the_round_in_flight(engine: Engine) -> None:
    """A restart after a clean stop repeats nothing the lanes sent: the round being written is waited for."""
    gate = asyncio.Event()
    lane_deps = deps(engine, FakeChannel(), Sinks())
    lane_deps.sql = GatedRounds(engine, gate)
    lane_deps.sql.in_place = None
    writer = Writer(lane_deps)
    (item,) = outbox.add(engine, items("t", 1))
    try:
        writer.finish([item.notification_id], [record(item, "sent", 1, "", datetime.now(UTC))])
        await until("the round in flight", lambda: writer._busy)
        stopping = asyncio.create_task(writer.stop())
        await asyncio.sleep(0)
        gate.set()
        await asyncio.wait_for(stopping, 20)
    finally:
        lane_deps.sql.dispose()
    assert db.was_delivered(engine, item.notification_id)
    assert outbox.pending(engine, [("tickets", 0)]) == []


class HeldChannel(FakeChannel):
    """Every send waits for ``gate`` after it is attempted (a slow receiver): what is in flight at once shows."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.under_way = 0
        self.most = 0

    async def send(self, message: Message, target: str) -> None:
        self.under_way += 1
        self.most = max(self.most, self.under_way)
        try:
            self.attempts.append((message, target))
            await self.gate.wait()
            self.delivered.append((message, target))
        finally:
            self.under_way -= 1


def _with_ticket(item: OutboxItem, ticket: str) -> OutboxItem:
    return dataclass_replace(item, ticket_id=ticket)


async def test_a_kind_with_several_in_flight_sends_that_many_to_one_target_at_once_and_each_once(
    engine: Engine,
) -> None:
    channel, sinks = HeldChannel(), Sinks()
    dispatcher = Dispatcher(deps(engine, channel, sinks, in_flight={"fake": 3}))
    try:
        dispatcher.submit(items("hook", 7), saved=False)
        await until("three under way", lambda: channel.under_way == 3)
        await asyncio.sleep(0)  # the lane's loop had its turn: no fourth was started
        assert len(channel.attempts) == 3
        assert [m.subject for m, _ in channel.attempts] == [f"[P1] New ticket tl-{i}" for i in range(3)]
        channel.gate.set()
        await until("all seven recorded", lambda: len(sinks.records) == 7)
    finally:
        await dispatcher.stop()
    assert sorted(delivered_ids(channel)) == sorted(f"hook-{i}" for i in range(7))
    assert channel.most == 3


async def test_a_tickets_messages_to_one_target_are_never_in_flight_together_and_keep_their_order(
    engine: Engine,
) -> None:
    """Three messages of ticket A and one of B, three allowed in flight: A's first and B's go at once, A's second
    waits for A's first, and A's three arrive in planning order."""
    channel, sinks = HeldChannel(), Sinks()
    dispatcher = Dispatcher(deps(engine, channel, sinks, in_flight={"fake": 3}))
    planned = items("hook", 4)
    a0, a1, b, a2 = (_with_ticket(i, t) for i, t in zip(planned, ["A", "A", "B", "A"], strict=True))
    try:
        dispatcher.submit([a0, a1, b, a2], saved=False)
        await until("two under way", lambda: channel.under_way == 2)
        await asyncio.sleep(0)
        assert [m.subject for m, _ in channel.attempts] == ["[P1] New ticket tl-0", "[P1] New ticket tl-2"]
        channel.gate.set()
        await until("all four recorded", lambda: len(sinks.records) == 4)
    finally:
        await dispatcher.stop()
    a_order = [m.subject for m, _ in channel.delivered if m.subject != "[P1] New ticket tl-2"]
    assert a_order == ["[P1] New ticket tl-0", "[P1] New ticket tl-1", "[P1] New ticket tl-3"]


async def test_a_stop_ends_the_sends_under_way(engine: Engine) -> None:
    channel, sinks = HeldChannel(), Sinks()
    dispatcher = Dispatcher(deps(engine, channel, sinks, in_flight={"fake": 2}))
    dispatcher.submit(items("hook", 2), saved=False)
    await until("two under way", lambda: channel.under_way == 2)
    await dispatcher.stop()
    assert channel.under_way == 0
    assert sinks.records == []


def test_only_a_kind_without_a_vendor_limit_may_have_several_in_flight() -> None:
    webhook = REGISTRY["webhook"]
    with pytest.raises(ValueError, match="in_flight must be 1 for a rate-limited kind"):
        dataclass_replace(webhook, limit=RateLimit(1, 1.0))
    with pytest.raises(ValueError, match="at least 1"):
        dataclass_replace(webhook, in_flight=0)
    assert all(kind.in_flight == 1 for kind in REGISTRY.values() if kind.limit is not None)


async def most_under_way(engine: Engine, target: str, age_s: float) -> int:
    """Three messages planned ``age_s`` ago to one target of a kind with three in flight and a catch-up time of a
    minute, sent through a slow receiver: how many were ever under way at once."""
    channel, sinks = HeldChannel(), Sinks()
    dispatcher = Dispatcher(deps(engine, channel, sinks, in_flight={"fake": 3}, catch_up_s=60.0))
    planned = [dataclass_replace(i, created_at=i.created_at - timedelta(seconds=age_s)) for i in items(target, 3)]
    try:
        dispatcher.submit(planned, saved=False)
        await until("the first under way", lambda: channel.under_way >= 1)
        channel.gate.set()
        await until("all three recorded", lambda: len(sinks.records) == 3 and not channel.under_way)
    finally:
        await dispatcher.stop()
    return channel.most


async def test_a_lane_keeping_up_sends_one_at_a_time_and_one_behind_catches_up_several_at_once(
    engine: Engine,
) -> None:
    """Messages planned just now wait for the one under way (a crash then repeats at most one); messages that have
    waited ``catch_up_s`` go beside it."""
    assert await most_under_way(engine, "keeping-up", 0.0) == 1
    assert await most_under_way(engine, "behind", 120.0) == 3


def test_a_message_goes_beside_others_only_once_it_has_waited_the_catch_up_time() -> None:
    assert beside_wait_s(0, 0.0, 0.005) == 0.0, "nothing under way: at once"
    assert beside_wait_s(2, 0.001, 0.005) == pytest.approx(0.004)
    assert beside_wait_s(1, 0.5, 0.005) == 0.0, "behind: beside the one under way"


def test_a_lane_remembers_its_last_finished_ids_where_the_garbage_collector_does_not_walk() -> None:
    recent = Recent(size=3)
    for i in range(7):
        recent.add(f"n{i}")
    assert all(f"n{i}" in recent for i in range(4, 7)), "the last `size` are always remembered"
    assert not any(f"n{i}" in recent for i in range(3)), "and at most twice as many"
    recent.discard("n6")  # a redriven item may be sent again
    assert "n6" not in recent
    assert len(recent) == 3
    gc.collect()
    assert not gc.is_tracked(recent._new) and not gc.is_tracked(recent._old)


class DigestGate(FakeChannel):
    """A digest waits for ``gate`` (it is under way meanwhile); the first one then fails, retryable, when
    ``fail_first``."""

    def __init__(self, *, fail_first: bool = False) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.fail_first = fail_first
        self.digests_under_way = 0

    async def send(self, message: Message, target: str) -> None:
        if message.kind == "digest":
            self.digests_under_way += 1
            await self.gate.wait()
            if self.fail_first:
                self.fail_first = False
                self.attempts.append((message, target))
                raise DeliveryError(f"fake {target}: HTTP 503")
        await super().send(message, target)


def kept_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(outbox.DIGESTS)).mappings()]


def member_ids(message: Message) -> set[str]:
    return set(digest_members(message)) or {f"chat-{message.subject.split('tl-')[1]}"}


async def test_a_digest_is_kept_with_its_members_before_it_goes_sent_again_as_it_was_and_let_go_once_delivered(
    engine: Engine,
) -> None:
    """Its members (sent first: not in the outbox yet) are written with it before the send; a failed digest is
    tried again as the same message, not folded anew with what came meanwhile; delivered, it leaves."""
    channel, sinks = DigestGate(fail_first=True), Sinks()
    dispatcher = Dispatcher(deps(engine, channel, sinks, limits={"fake": RateLimit(1, 0.05)}))
    try:
        dispatcher.submit(items("chat", 6), saved=False)
        await until("a digest under way", lambda: channel.digests_under_way == 1)
        [row] = kept_rows(engine)
        members = [str(m) for m in row["payload"]["data"]["digest"]]
        assert len(members) > 1
        assert row["payload"]["data"][DIGEST_ID] == row["digest_id"]
        assert {i.notification_id for i in outbox.pending(engine, [("tickets", 0)])} >= set(members)
        dispatcher.submit(items("chat", 3, start=6), saved=False)  # more for the same target meanwhile
        channel.gate.set()
        await until("every notification recorded", lambda: len(sinks.records) == 9)
        await until("the digest let go", lambda: kept_rows(engine) == [])
    finally:
        await dispatcher.stop()
    failed, *_ = (m for m, _ in channel.attempts if m.kind == "digest")
    again = [m for m, _ in channel.delivered if digest_members(m) and set(digest_members(m)) & set(members)]
    assert again == [failed], "the same message again, and its members in no other"
    assert sorted(n for m, _ in channel.delivered for n in member_ids(m)) == sorted(f"chat-{i}" for i in range(9))
    assert outbox.pending(engine, [("tickets", 0)]) == []


async def test_a_digest_a_dead_worker_kept_goes_again_as_it_was_before_anything_else_of_its_target(
    engine: Engine,
) -> None:
    held = outbox.add(engine, items("chat", 6))
    _, folded = fold(held[:4], 4000)
    message = dataclass_replace(folded, data={**folded.data, DIGEST_ID: "dg-1"})
    outbox.write(engine, [Keep(Digest("dg-1", "fake", "chat", message_to_json(message), datetime.now(UTC)), [])])
    channel, sinks = FakeChannel(), Sinks()
    dispatcher = Dispatcher(deps(engine, channel, sinks, limits={"fake": RateLimit(1, 0.05)}))
    try:
        assert await dispatcher.assign([("tickets", 0)]) == 6
        await until("every notification recorded", lambda: len(sinks.records) == 6)
        await until("the digest let go", lambda: kept_rows(engine) == [])
    finally:
        await dispatcher.stop()
    assert channel.delivered[0] == (message, "chat")
    rest = [n for m, _ in channel.delivered[1:] for n in member_ids(m)]
    assert sorted(rest) == ["chat-4", "chat-5"]


def test_kept_digests_are_found_by_a_loaded_member_and_those_with_none_pending_are_deleted(engine: Engine) -> None:
    outbox.add(engine, items("chat", 3))
    now = datetime.now(UTC)

    def kept(digest_id: str, members: list[str]) -> Keep:
        payload = message_to_json(Message("digest", "2", "two", {"digest": members, DIGEST_ID: digest_id}))
        return Keep(Digest(digest_id, "fake", "chat", payload, now), [])

    outbox.write(engine, [kept("dg-live", ["chat-0", "chat-1"]), kept("dg-done", ["gone-0", "gone-1"])])
    assert outbox.digests(engine, ["elsewhere"]) == [], "kept, but none of its members loaded here"
    assert outbox.forget_done_digests(engine) == 1
    assert [r["digest_id"] for r in kept_rows(engine)] == ["dg-live"], "nothing of dg-done is pending: deleted"
    [found] = outbox.digests(engine, ["chat-1"])
    assert (found.digest_id, found.members) == ("dg-live", ["chat-0", "chat-1"])
    lanes_ = Dispatcher(deps(engine, FakeChannel(), Sinks()))
    lane = Lane("fake", "chat", lanes_.deps, lanes_.writer)
    lane.items = {i.notification_id: i for i in items("chat", 1, start=1)}
    assert not lane.keep_loaded(found), "a member is not here (another worker's partition): folded anew"
    lane.items = {i.notification_id: i for i in items("chat", 2)}
    assert lane.keep_loaded(found)
    assert lane.kept_of == {"chat-0": "dg-live", "chat-1": "dg-live"}
    outbox.write(engine, [outbox.Drop("dg-live")])
    assert kept_rows(engine) == []


async def test_an_outbox_whose_kept_digests_cannot_be_read_still_has_its_items_sent(engine: Engine) -> None:
    """The digests are a refinement: when they cannot be read, the loaded items go as before (folded anew)."""
    outbox.add(engine, items("chat", 3))
    with engine.begin() as conn:
        conn.execute(outbox.DIGESTS.delete())
        conn.exec_driver_sql("DROP TABLE notify_digests")
    channel, sinks = FakeChannel(), Sinks()
    dispatcher = Dispatcher(deps(engine, channel, sinks))
    try:
        assert await dispatcher.assign([("tickets", 0)]) == 3
        await until("the three sent", lambda: len(sinks.records) == 3)
    finally:
        await dispatcher.stop()
    assert sorted(delivered_ids(channel)) == ["chat-0", "chat-1", "chat-2"]


async def test_a_digest_holds_notifications_of_one_partition_only(engine: Engine) -> None:
    """So the one worker assigned that partition owns the digest whole (helper-34: a digest across partitions,
    loaded in two assignments after a kill, was folded anew and each of its members came twice)."""
    mixed = [dataclass_replace(i, source_partition=i.seq % 2) for i in items("chat", 12)]
    channel, sinks = FakeChannel(), Sinks()
    dispatcher = Dispatcher(deps(engine, channel, sinks, limits={"fake": RateLimit(1, 0.05)}))
    try:
        dispatcher.submit(mixed, saved=False)
        await until("every notification recorded", lambda: len(sinks.records) == 12)
    finally:
        await dispatcher.stop()
    digests = [set(digest_members(m)) for m, _ in channel.delivered if m.kind == "digest"]
    assert digests, "the backlog was folded"
    partition_of = {i.notification_id: i.source_partition for i in mixed}
    assert all(len({partition_of[n] for n in members}) == 1 for members in digests)
    assert sorted(delivered_ids(channel)) == sorted(i.notification_id for i in mixed)


def test_a_lanes_limit_is_its_workers_part_of_the_vendors(engine: Engine) -> None:
    owned = [(12, 12)]
    lanes_ = Dispatcher(deps(engine, FakeChannel(), Sinks(), limits={"fake": RateLimit(20, 60.0)}))
    lanes_.deps.share = lambda: owned[0]
    lane = Lane("fake", "robot", lanes_.deps, lanes_.writer)
    assert lane.limit == RateLimit(20, 60.0)
    owned[0] = (6, 12)  # a second worker joined: half the partitions, half the limit
    assert lane.limit == RateLimit(10, 60.0)
