"""The notifier worker's batch handling with a fake channel and a real SQLite outbox (no broker: the handler is
called as the driver calls it). A new notification is sent before anything is written to the outbox; what a
lane still holds when offsets are to be committed is kept in the outbox; a record the worker may be reading
again is planned the careful way, so what a previous owner sent is not sent twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiokafka.errors import KafkaConnectionError
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, func, select

from services.notifier.channels.base import Message
from services.notifier.config import NotifyConfig
from services.notifier.lanes import HOLD_S
from services.notifier.service import Notifier, NotifierDeps, replayed
from services.notifier.stages import BreakerPolicy, RetryPolicy
from shared.events import Change
from shared.infra.config import ConfigWatcher
from shared.rules.muting import MutingConfig
from shared.rules.oncall import TeamsConfig
from shared.store import db, outbox
from shared.streaming.codec import encode
from shared.streaming.driver import DriverConfig, Record
from shared.streaming.stream_metrics import StreamMetrics
from shared.streaming.topics import Topics
from tests.fakes import FakeChannel
from tests.unit.factories import ticket_event
from tests.unit.test_lanes import items, until

TICKETS = "tickets"


class WatchingChannel(FakeChannel):
    """A fake webhook that notes, at each send, how many rows the outbox holds."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self.rows_at_send: list[int] = []

    async def send(self, message: Message, target: str) -> None:
        with self.engine.connect() as conn:
            self.rows_at_send.append(conn.execute(select(func.count()).select_from(outbox.OUTBOX)).scalar_one())
        await super().send(message, target)


class GatedChannel(WatchingChannel):
    """Holds every send until ``gate`` is set."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.gate = asyncio.Event()

    async def send(self, message: Message, target: str) -> None:
        self.attempts.append((message, target))
        await self.gate.wait()
        self.attempts.pop()
        await super().send(message, target)


HOOKS = NotifyConfig.model_validate(
    {
        "teams": {
            "ops": {
                "channels": [
                    {"type": "webhook", "name": "hook", "url": "http://127.0.0.1:9/h", "secret": "unit-test-secret"}
                ]
            }
        }
    }
)


def notifier(
    engine: Engine,
    tmp_path: Path,
    channel: FakeChannel,
    replay_until: int = 0,
    config: NotifyConfig = HOOKS,
    topic: str = TICKETS,
    kind: str = "webhook",
    hold_s: float = HOLD_S,
) -> Notifier:
    """A worker over ``config`` (its ``kind`` entries sent through ``channel``) assigned partition 0 of ``topic``,
    which ended at ``replay_until`` when assigned (records below are read again)."""
    (tmp_path / "routing.yaml").write_text("route:\n  team: ops\n")
    deps = NotifierDeps(
        topics=Topics("", 1),
        config=config,
        channels={kind: channel},
        engine=engine,
        registry=CollectorRegistry(),
        retry=RetryPolicy(base_s=0.01, max_s=0.05, give_up_s=3600.0),
        breaker=BreakerPolicy(failures=1000, open_s=0.05, max_open_s=0.1),
        public_url="http://127.0.0.1:8080",
        muting=ConfigWatcher(tmp_path / "routing.yaml", MutingConfig),
        teams=ConfigWatcher(tmp_path / "teams.yaml", TeamsConfig, optional=True),
        hold_s=hold_s,
    )
    worker = Notifier(deps, DriverConfig("127.0.0.1:9", "g", (topic,)), "127.0.0.1:9")
    worker.replay_until[(topic, 0)] = replay_until
    return worker


def sent_tickets(engine: Engine) -> list[str]:
    """The tickets of the delivery log's sent records."""
    log = db.DELIVERIES
    with engine.connect() as conn:
        return list(conn.execute(select(log.c.ticket_id).where(log.c.status == "sent")).scalars())


def opened(n: int, offset: int) -> Record:
    event = ticket_event(Change.opened, 1, ticket_id=f"tl-{n}", team="ops")
    return Record(TICKETS, 0, offset, event.ticket.ticket_id.encode(), encode(event), (), 0)


def test_a_record_below_where_its_partition_ended_at_assignment_is_read_again() -> None:
    ends = {(TICKETS, 0): 10}
    assert replayed(opened(1, 9), ends)
    assert not replayed(opened(1, 10), ends)
    assert replayed(opened(1, 10), {}), "a partition whose end is not known: every record counts as read again"


async def test_a_new_notification_is_sent_before_anything_is_written_to_the_outbox(
    engine: Engine, tmp_path: Path
) -> None:
    channel = WatchingChannel(engine)
    worker = notifier(engine, tmp_path, channel)
    try:
        await worker.handle([opened(1, 0), opened(2, 1)])
        await until("both sent and written down", lambda: "tl-1" in sent_tickets(engine))
        await until("the second written down", lambda: "tl-2" in sent_tickets(engine))
    finally:
        await worker.dispatcher.stop()
    assert channel.rows_at_send == [0, 0]
    assert len(channel.delivered) == 2


async def first_ticket_sent(engine: Engine, tmp_path: Path) -> WatchingChannel:
    """A worker that handles ticket tl-1's opening at offset 0 until it is sent and written down, then stops;
    returns its channel."""
    channel = WatchingChannel(engine)
    worker = notifier(engine, tmp_path, channel)
    try:
        await worker.handle([opened(1, 0)])
        await until("sent and written down", lambda: "tl-1" in sent_tickets(engine))
    finally:
        await worker.dispatcher.stop()
    return channel


async def test_each_message_carries_its_notification_id_so_a_receiver_can_drop_a_repeat(
    engine: Engine, tmp_path: Path
) -> None:
    """The webhook body is the message's data: it names the notification (the delivery log's id), the same at
    every attempt, so a receiver drops what a killed notifier sends again."""
    channel = await first_ticket_sent(engine, tmp_path)
    log = db.DELIVERIES
    with engine.connect() as conn:
        logged = set(conn.execute(select(log.c.notification_id).where(log.c.status == "sent")).scalars())
    named = {str(message.data["notification_id"]) for message, _ in channel.delivered}
    assert named == logged
    assert len(named) == len(channel.delivered) == 1


async def test_what_a_lane_holds_briefly_at_a_commit_holds_the_commit_below_its_event_and_is_sent_once(
    engine: Engine, tmp_path: Path
) -> None:
    """A slow endpoint: two messages in flight (a webhook takes several at once), when the driver is about to
    commit. Neither is written to the outbox; the commit stops below the first one's event instead (a crash reads
    both events again), and once both are sent it goes through."""
    channel = GatedChannel(engine)
    worker = notifier(engine, tmp_path, channel)
    try:
        await worker.handle([opened(1, 3), opened(2, 4)])
        await until("both in flight", lambda: len(channel.attempts) == 2)
        caps = await worker.checkpoint()
        assert outbox.pending(engine, [(TICKETS, 0)]) == [], "held briefly: nothing written"
        assert caps == {(TICKETS, 0): 3}
        channel.gate.set()
        await until("both sent", lambda: sorted(sent_tickets(engine)) == ["tl-1", "tl-2"])
        assert await worker.checkpoint() == {}
    finally:
        await worker.dispatcher.stop()
    assert len(channel.delivered) == 2


async def test_what_a_lane_holds_past_the_hold_time_at_a_commit_is_kept_in_the_outbox_and_sent_once_later(
    engine: Engine, tmp_path: Path
) -> None:
    """The same slow endpoint, the messages held longer than ``hold_s``: both are in the outbox before the
    commit (a crash then loses neither), the commit is not held back, and each arrives once."""
    channel = GatedChannel(engine)
    worker = notifier(engine, tmp_path, channel, hold_s=0.0)
    try:
        await worker.handle([opened(1, 3), opened(2, 4)])
        await until("both in flight", lambda: len(channel.attempts) == 2)
        assert outbox.pending(engine, [(TICKETS, 0)]) == [], "sent first: nothing written yet"
        assert await worker.checkpoint() == {}
        assert sorted(i.ticket_id for i in outbox.pending(engine, [(TICKETS, 0)])) == ["tl-1", "tl-2"]
        channel.gate.set()
        await until("both sent", lambda: sorted(sent_tickets(engine)) == ["tl-1", "tl-2"])
        await worker.checkpoint()
    finally:
        await worker.dispatcher.stop()
    assert len(channel.delivered) == 2
    assert outbox.pending(engine, [(TICKETS, 0)]) == []


async def test_a_failed_send_is_kept_in_the_outbox_at_once_with_its_tries(engine: Engine, tmp_path: Path) -> None:
    channel = WatchingChannel(engine)
    channel.down.add("hook")
    worker = notifier(engine, tmp_path, channel)
    try:
        await worker.handle([opened(1, 0)])
        await until("kept after its first failure", lambda: bool(outbox.pending(engine, [(TICKETS, 0)])))
        assert outbox.pending(engine, [(TICKETS, 0)])[0].attempts >= 1
        channel.down.clear()
        await until("sent once the target is back", lambda: "tl-1" in sent_tickets(engine))
        await worker.checkpoint()
    finally:
        await worker.dispatcher.stop()
    assert len(channel.delivered) == 1
    assert outbox.pending(engine, [(TICKETS, 0)]) == []


async def test_a_record_read_again_after_a_crash_does_not_send_what_the_previous_owner_sent(
    engine: Engine, tmp_path: Path
) -> None:
    """The first worker sends and writes down, then dies before its offsets are committed; the next owner reads
    the record again (below where the partition ended when it was assigned) and sends nothing twice, while a
    record past that end is new and sent."""
    first_channel = await first_ticket_sent(engine, tmp_path)
    channel = WatchingChannel(engine)
    second = notifier(engine, tmp_path, channel, replay_until=1)
    try:
        await second.handle([opened(1, 0), opened(2, 1)])
        await until("the new one sent", lambda: "tl-2" in sent_tickets(engine))
        await second.checkpoint()
    finally:
        await second.dispatcher.stop()
    assert len(first_channel.delivered) == 1
    assert len(channel.delivered) == 1 and "tl-2" in channel.delivered[0][0].subject
    assert outbox.pending(engine, [(TICKETS, 0)]) == []


class AwayBroker:
    """A producer whose every write fails as aiokafka's does when the broker is away."""

    async def send_and_wait(self, *_args: object, **_kwargs: object) -> None:
        raise KafkaConnectionError("the broker is away")


async def test_a_dead_letter_that_cannot_be_written_is_logged_and_counted_not_raised(
    engine: Engine, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    worker = notifier(engine, tmp_path, FakeChannel())
    worker.deps.stream = StreamMetrics(registry, "notifier")
    worker._producer = AwayBroker()
    item = items("x", 1)[0]
    await worker.on_give_up(item, "fake x: HTTP 404")
    given_up = registry.get_sample_value(
        "ticketloop_deadletter_records_total", {"service": "notifier", "reason_kind": "delivery_given_up"}
    )
    assert given_up == 1.0


def test_a_workers_part_of_each_vendors_limit_is_the_share_of_partitions_it_is_assigned(
    engine: Engine, tmp_path: Path
) -> None:
    worker = notifier(engine, tmp_path, FakeChannel())  # Topics("", 1): tickets, escalations, handovers
    assert worker.share() == (3, 3), "nothing assigned yet: nothing to send, the whole limit"
    worker.assigned = {(TICKETS, 0)}
    assert worker.share() == (1, 3)
    lane_deps = worker.dispatcher.deps
    assert lane_deps.share() == (1, 3), "what the lanes read"
