"""The router's processor (the shell the exactly-once driver runs) on the in-memory broker: every input topic's
handler, its tables, the timer, dead letters. The same steps and partitioning as on Kafka; no broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import structlog
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError

from services.router.grouping import KeyState
from services.router.hop import TicketInput, decode_input, encode_input, grouped_inputs
from services.router.packages import ProjectsWatcher
from services.router.rules import RouteDecision, RoutingConfig, decide
from services.router.service import (
    ASSIGNMENTS,
    HEARTBEATS,
    MEMBERS,
    TICKETS,
    TIMERS,
    Router,
    RouterDeps,
    RouterProcessor,
)
from services.router.steps import route_step
from shared.events import (
    Action,
    Change,
    Command,
    DeadLetter,
    EventStatus,
    InboundEvent,
    Severity,
    TicketEvent,
    beat_event,
)
from shared.infra.config import ConfigWatcher
from shared.rules.oncall import TeamsConfig
from shared.store import db
from shared.streaming.codec import decode, encode
from shared.streaming.driver import DriverConfig, Record
from shared.streaming.memory import MemoryBroker
from shared.streaming.topics import Topics, partition_of
from shared.streaming.transactional import Task, TransactionalDriver, TxConfig
from tests.unit.factories import T0, event, ticket

GROUPED = """
route:
  team: ops
  group_by: [alertname]
flapping: {changes: 3, within: 10m, stable_for: 3s}
"""


FLAT = "route:\n  team: ops\n"

Make = Callable[..., tuple[MemoryBroker, Topics]]


def router_broker(root: Path, routing: str = GROUPED, projects: str = "projects: []\n") -> tuple[MemoryBroker, Topics]:
    """The router's processor on the in-memory broker, with ``routing`` as its routing.yaml (files under root)."""
    (root / "routing.yaml").write_text(routing)
    (root / "projects.yaml").write_text(projects)
    topics = Topics("u.", 4)
    deps = RouterDeps(
        topics,
        ConfigWatcher(root / "routing.yaml", RoutingConfig),
        ProjectsWatcher(root),  # as the router runs: projects.yaml and the handover packages in force
        db.make_engine("sqlite://"),
        CollectorRegistry(),
        ConfigWatcher(root / "teams.yaml", TeamsConfig, optional=True),
    )
    processor = RouterProcessor(deps)
    return MemoryBroker(processor, inputs=processor.topics, partitions=4, group_id="u.router"), topics


@pytest.fixture
def make(tmp_path: Path) -> Make:
    def build(routing: str = GROUPED) -> tuple[MemoryBroker, Topics]:
        return router_broker(tmp_path, routing)

    return build


def alert(i: int, name: str = "DiskFull", status: EventStatus = EventStatus.firing) -> bytes:
    ev = event(
        event_id=f"e{i}-{status.value}",
        dedup_key=f"am/{name}-{i}",
        labels={"alertname": name, "instance": f"h{i}"},
        status=status,
        trace_id=f"t{i}",
    )
    return encode(ev)


def changes(broker: MemoryBroker, topics: Topics) -> list[TicketEvent]:
    return [decode(TicketEvent, r.value) for r in broker.records(topics.tickets.name)]


def test_a_storm_in_two_groups_opens_two_tickets_and_counts_every_alert(make: Make) -> None:
    broker, topics = make()
    for i in range(40):
        broker.produce(topics.events.name, f"am/x-{i}".encode(), alert(i, "DiskFull" if i % 2 else "CpuHot"))
    broker.run()
    out = changes(broker, topics)
    opened = [c for c in out if c.change is Change.opened]
    joined = [c for c in out if c.change is Change.occurred]
    # per ticket: opened, then one change per commit (the events read on the group's partition, then the hops)
    assert len(opened) + len(joined) == len(out) <= 6, "a commit's occurrences of a ticket are told as one event"
    assert sum(c.told for c in joined) == 38
    raw = [r.value or b"" for r in broker.records(topics.tickets.name)]
    assert all((b'"told"' in v) == (decode(TicketEvent, v).told > 1) for v in raw), "told is written only above 1"
    assert all(c.reason.startswith("another alert joined") for c in joined)
    assert sorted(c.ticket.summary for c in opened) and len(opened) == 2
    latest = {c.ticket.ticket_id: c.ticket for c in out}
    assert sorted(t.alerts for t in latest.values()) == [20, 20]
    hopped = broker.records(topics.grouped.name)
    items = [(r.partition, i) for r in hopped for i in grouped_inputs("", r.value or b"")]
    assert all(p == partition_of(i.group_key.encode(), 4) for p, i in items), "each to its group's partition"
    home = {i.event.labels["alertname"]: p for p, i in items}
    assert len(home) == 2
    source = {f"e{i}-firing": partition_of(f"am/x-{i}".encode(), 4) for i in range(40)}
    name = {f"e{i}-firing": "DiskFull" if i % 2 else "CpuHot" for i in range(40)}
    away = sorted(e for e in source if source[e] != home[name[e]])
    assert sorted(i.event.event_id for _, i in items) == away, (
        "an event hops once to its group's partition, and only when the group lives on another one"
    )
    assert 0 < len(away) < 40
    assert len(hopped) < len(items), "a transaction's hops to one partition travel as one record"
    tasks = broker.tasks.values()
    assert sum(len(t.tables[TICKETS]) for t in tasks) == 2
    assert sum(len(t.tables[MEMBERS]) for t in tasks) == 40
    assert sum(len(t.tables[ASSIGNMENTS]) for t in tasks) == 2


def test_each_event_is_decided_once_though_most_hop_to_their_group(make: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    # the routing tree is walked through services.router.decision alone; count its walks (calling through)
    walks: list[str] = []

    def counted(labels: dict[str, str], severity: Severity, routing: RoutingConfig) -> RouteDecision:
        walks.append(labels["alertname"])
        return decide(labels, severity, routing)

    monkeypatch.setattr("services.router.decision.decide", counted)
    broker, topics = make()
    for i in range(40):
        broker.produce(topics.events.name, f"am/x-{i}".encode(), alert(i, "DiskFull" if i % 2 else "CpuHot"))
    broker.run()
    assert broker.records(topics.grouped.name), "some events hopped to their group's partition"
    assert sum(1 for c in changes(broker, topics) if c.change is Change.opened) == 2
    assert sorted(walks) == sorted("DiskFull" if i % 2 else "CpuHot" for i in range(40)), "one decision per event"


def test_a_storm_logs_its_tickets_changes_not_a_line_per_alert(make: Make) -> None:
    broker, topics = make()
    for i in range(40):
        broker.produce(topics.events.name, f"am/x-{i}".encode(), alert(i, "DiskFull" if i % 2 else "CpuHot"))
    with structlog.testing.capture_logs() as logged:
        broker.run()
    changed = [e for e in logged if e["event"] == "ticket_changed"]
    assert [e["change"] for e in changed if e["log_level"] == "info"] == ["opened", "opened"]
    assert {e["change"] for e in changed if e["log_level"] == "debug"} == {"occurred"}, "alerts joining: debug"
    assert len(changed) == 40


def test_the_decision_carried_from_the_first_hop_is_the_one_applied_across_a_reload(make: Make, tmp_path: Path) -> None:
    broker, topics = make()
    broker.produce(topics.events.name, b"am/x-1", alert(1))
    # route the event (first hop) but do not yet let its ticket's partition apply it
    for task in broker.tasks.values():
        records = broker.records(topics.events.name)
        mine = [r for r in records if r.partition == task.partition]
        if mine:
            broker.read[(topics.events.name, task.partition)] = len(mine)
            broker.step(task, mine)
    (tmp_path / "routing.yaml").write_text("route:\n  team: dba\n  group_by: [alertname]\n")
    processor = broker.processor
    assert isinstance(processor, RouterProcessor)
    assert processor.deps.routing.poll() == "reloaded"
    broker.run()
    [opened] = changes(broker, topics)
    assert opened.ticket.team == "ops", "the team decided when the event was routed, not after the reload"


def test_a_command_acts_on_its_ticket_and_one_for_an_unknown_ticket_is_dead_lettered(make: Make) -> None:
    broker, topics = make()
    broker.produce(topics.events.name, b"am/x-1", alert(1))
    broker.run()
    [opened] = changes(broker, topics)
    tid = opened.ticket.ticket_id
    for cmd_id, ticket_id in (("c1", tid), ("c2", "tl-unknown")):
        cmd = Command(
            command_id=cmd_id,
            ticket_id=ticket_id,
            action=Action.acknowledge,
            actor="ann",
            reason="",
            issued_at=T0,
            trace_id="tc",
        )
        broker.produce(topics.commands.name, ticket_id.encode(), encode(cmd))
    broker.produce(topics.events.name, b"am/bad", b"{nope")
    broker.run()
    assert [c.change for c in changes(broker, topics)] == [Change.opened, Change.acknowledged]
    reasons = sorted(decode(DeadLetter, r.value).reason for r in broker.records(topics.deadletter.name))
    assert len(reasons) == 2
    assert "malformed JSON" in reasons[1] and "tl-unknown" in reasons[0]
    assert broker.dead_lettered == {"unknown_ticket": 1, "undecodable": 1}, "counted by kind, never by reason text"


def test_a_resolve_reaches_the_group_and_a_recurrence_within_the_window_reopens_the_ticket(make: Make) -> None:
    broker, topics = make()
    broker.produce(topics.events.name, b"am/x-1", alert(1))
    broker.produce(topics.events.name, b"am/x-1", alert(1, status=EventStatus.resolved))
    broker.run()
    broker.produce(topics.events.name, b"am/x-2", alert(2))
    broker.run()
    out = changes(broker, topics)
    assert [c.change for c in out] == [Change.opened, Change.resolved, Change.reopened]
    assert len({c.ticket.ticket_id for c in out}) == 1


def test_a_ticket_minted_on_its_groups_partition_is_written_there_with_no_hop(make: Make) -> None:
    broker, topics = make()
    broker.produce(topics.events.name, b"am/x-1", alert(1))
    broker.produce(topics.events.name, b"am/x-1", alert(1, status=EventStatus.resolved))
    broker.run()
    out = changes(broker, topics)
    assert [c.change for c in out] == [Change.opened, Change.resolved]
    ticket = out[0].ticket
    home = partition_of(ticket.dedup_key.encode(), 4)
    assert partition_of(ticket.ticket_id.encode(), 4) == home
    assert broker.records(topics.ticket_inputs.name) == [], "handed over in place"
    assert broker.records(topics.key_updates.name) == [], "the group heard of the resolve in place"
    state = decode(KeyState, broker.tasks[home].tables[ASSIGNMENTS][ticket.dedup_key.encode()])
    assert state.inline and state.ticket_id == ticket.ticket_id and state.resolved_at is not None


def test_a_ticket_minted_before_inline_tickets_still_travels_through_its_topics(make: Make) -> None:
    broker, topics = make(FLAT)
    old = KeyState(ticket_id="tl-0123456789abcdef")  # as an earlier router left it: not inline
    group = b"am/DiskFull-1"  # ungrouped: the group is the alert's own dedup key
    broker.tasks[partition_of(group, 4)].tables[ASSIGNMENTS][group] = encode(old)
    broker.produce(topics.events.name, group, alert(1))
    broker.produce(topics.events.name, group, alert(1, status=EventStatus.resolved))
    broker.run()
    out = changes(broker, topics)
    assert [(c.change, c.ticket.ticket_id) for c in out] == [
        (Change.opened, old.ticket_id),
        (Change.resolved, old.ticket_id),
    ]
    assert len(broker.records(topics.ticket_inputs.name)) == 2
    assert len(broker.records(topics.key_updates.name)) == 1, "the group learned its ticket resolved"
    raw = broker.tasks[partition_of(group, 4)].tables[ASSIGNMENTS][group]
    state = decode(KeyState, raw)
    assert state.resolved_at is not None and not state.inline
    assert b"inline" not in raw, "stored as the release before inline tickets wrote it, so it can still read it"


def test_the_timer_settles_a_flapping_ticket_in_the_tickets_own_task(make: Make) -> None:
    broker, topics = make()
    for n, status in enumerate([EventStatus.firing, EventStatus.resolved, EventStatus.firing, EventStatus.resolved]):
        ev = event(
            event_id=f"f{n}",
            dedup_key="am/flap",
            labels={"alertname": "Flap"},
            status=status,
            occurred_at=T0 + timedelta(seconds=n),
        )
        broker.produce(topics.events.name, b"am/flap", encode(ev))
    broker.run()
    assert changes(broker, topics)[-1].change is Change.flapping
    timers = [t for t in broker.tasks.values() if t.tables[TIMERS]]
    assert len(timers) == 1, "the flapping ticket waits on its partition's timer"
    [due] = timers[0].tables[TIMERS].values()
    broker.punctuate(decode_time(due) - 1)
    assert changes(broker, topics)[-1].change is Change.flapping, "not before it is due"
    broker.punctuate(decode_time(due) + 1)
    last = changes(broker, topics)[-1]
    assert (last.change, last.actor) == (Change.resolved, "router-timer")
    assert timers[0].tables[TIMERS] == {}, "nothing left due"


def decode_time(raw: bytes) -> float:
    return datetime.fromisoformat(raw.decode()).timestamp()


def heartbeat_beat(at_s: float, n: int = 0) -> InboundEvent:
    every, grace = timedelta(seconds=60), timedelta(seconds=30)
    return beat_event("nightly", "cron", every, grace, T0 + timedelta(seconds=at_s), f"b{n}", f"t{n}")


def test_the_routers_timer_opens_a_ticket_when_beats_stop_and_a_beat_resolves_it(make: Make) -> None:
    broker, topics = make()
    start = time.time()  # the router keeps a beat at the time it handles it, by its own clock
    broker.produce(topics.events.name, b"heartbeat/nightly", encode(heartbeat_beat(0)))
    broker.run()
    assert changes(broker, topics) == [], "a beat is no ticket"
    assert sum(len(t.tables[HEARTBEATS]) for t in broker.tasks.values()) == 1
    broker.punctuate(start + 85)
    broker.run()
    assert changes(broker, topics) == [], "not before it is due (60 s and 30 s of grace)"
    broker.punctuate(start + 200)
    broker.run()
    broker.punctuate(start + 300)
    broker.run()
    [opened] = changes(broker, topics)
    assert opened.change is Change.opened and "heartbeat nightly missing" in opened.ticket.summary
    broker.produce(topics.events.name, b"heartbeat/nightly", encode(heartbeat_beat(300, 1)))
    broker.run()
    assert [c.change for c in changes(broker, topics)] == [Change.opened, Change.resolved]
    bad = heartbeat_beat(400, 2).model_copy(update={"annotations": {"heartbeat_every_s": "1e12"}})
    broker.produce(topics.events.name, b"heartbeat/nightly", encode(bad))
    broker.run()
    broker.punctuate(start + 500)
    [dead] = [decode(DeadLetter, r.value) for r in broker.records(topics.deadletter.name)]
    assert "out of bounds" in dead.reason, "a beat no intake makes is dead-lettered, the timer goes on"
    assert broker.dead_lettered == {"undecodable": 1}


def projecting_router(root: Path) -> tuple[Router, Engine, CollectorRegistry]:
    """A Router over a SQLite read model under root, for its SQL projection (no broker: ``write`` is called)."""
    engine = db.make_engine(f"sqlite:///{root / 'rm.db'}")
    db.init_db(engine)
    (root / "routing.yaml").write_text(GROUPED)
    (root / "projects.yaml").write_text("projects: []\n")
    registry = CollectorRegistry()
    deps = RouterDeps(
        Topics("u.", 4),
        ConfigWatcher(root / "routing.yaml", RoutingConfig),
        ProjectsWatcher(root),
        engine,
        registry,
        ConfigWatcher(root / "teams.yaml", TeamsConfig, optional=True),
    )
    return Router(deps, TxConfig("x", "g", (), 4), DriverConfig("x", "g", ())), engine, registry


def test_the_projection_leaves_out_the_one_record_sql_refuses_and_writes_the_rest(tmp_path: Path) -> None:
    router, engine, registry = projecting_router(tmp_path)

    def opened(ticket_id: str, **over: object) -> TicketEvent:
        t = ticket(ticket_id=ticket_id, **over)
        return TicketEvent(change_id=f"{ticket_id}:1", change=Change.opened, actor="am", at=T0, ticket=t, trace_id="t")

    beyond = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-12)))  # past what SQL can hold in UTC
    batch = [opened("tl-a"), opened("tl-b", snoozed_until=beyond), opened("tl-c"), opened("tl-d")]
    asyncio.run(router.write(batch, []))
    assert sorted(r.ticket_id for r in db.list_tickets(engine)) == ["tl-a", "tl-c", "tl-d"]
    assert registry.get_sample_value("ticketloop_router_projection_refused_total") == 1


def test_an_error_of_the_database_being_away_is_transient_and_one_of_what_was_sent_is_not() -> None:
    assert db.is_transient(OperationalError("stmt", {}, Exception("database is locked")))
    assert not db.is_transient(IntegrityError("stmt", {}, Exception("unique")))
    assert not db.is_transient(StatementError("overflow", "stmt", {}, OverflowError("date value out of range")))


def test_a_resolve_for_a_group_with_no_ticket_is_counted_not_silently_dropped(make: Make) -> None:
    broker, topics = make(FLAT)
    ev = event(event_id="r1", dedup_key="pd/unknown", status=EventStatus.resolved, source="pd")
    broker.produce(topics.events.name, b"pd/unknown", encode(ev))
    broker.run()
    assert changes(broker, topics) == []
    processor = broker.processor
    assert isinstance(processor, RouterProcessor)
    registry = processor.deps.registry
    labels = {"status": "resolved", "source": "pd"}
    assert registry.get_sample_value("ticketloop_router_events_without_ticket_total", labels) == 1


def test_at_the_end_of_hypercare_an_open_ticket_is_handed_over_to_operations_once_on_the_timer(tmp_path: Path) -> None:
    go_live = T0 - timedelta(days=1)
    projects = f"""
projects:
  - name: webshop
    customer: acme
    matchers: ['project="webshop"']
    go_live: {go_live.isoformat()}
    hypercare: 2d
    implementation: {{team: implementation, engineers: [ian]}}
    operations: {{team: operations}}
"""
    broker, topics = router_broker(tmp_path, FLAT, projects)
    for n, fp in enumerate(("a", "b")):
        ev = event(event_id=f"h{n}", dedup_key=f"am/{fp}", labels={"alertname": "Disk", "project": "webshop"})
        broker.produce(topics.events.name, f"am/{fp}".encode(), encode(ev))
    broker.run()
    opened = changes(broker, topics)
    assert {(c.ticket.team, c.ticket.person, c.ticket.phase) for c in opened} == {
        ("implementation", "ian", "hypercare")
    }
    ends = go_live + timedelta(days=2)
    assert {c.ticket.phase_until for c in opened} == {ends}
    resolved = event(event_id="r", dedup_key="am/b", status=EventStatus.resolved, labels={"project": "webshop"})
    broker.produce(topics.events.name, b"am/b", encode(resolved))
    broker.run()
    broker.punctuate((ends - timedelta(seconds=1)).timestamp())
    broker.run()
    assert [c.change for c in changes(broker, topics)][2:] == [Change.resolved], "nothing before hypercare ends"
    for at in (ends + timedelta(seconds=1), ends + timedelta(seconds=2)):
        broker.punctuate(at.timestamp())
        broker.run()
    [moved] = [c for c in changes(broker, topics) if c.change is Change.reassigned]
    assert moved.ticket.dedup_key == "am/a", "only the active ticket moves; the resolved one stays as it was"
    t = moved.ticket
    assert (t.team, t.person, t.phase, t.next_level, t.phase_until) == (
        "operations",
        None,
        "operations",
        "implementation",
        None,
    )
    assert t.watchers == [] and t.state.value == "open" and t.acknowledged_at is None
    assert moved.reason.startswith(f"handover: hypercare of project webshop ended {ends.date().isoformat()}")
    assert "from ian (implementation) to operations" in moved.reason


def hops_in_one_batch(broker: MemoryBroker, count: int) -> tuple[int, list[tuple[str, str, str]]]:
    """``count`` alerts (group key, alertname, dedup key) of groups of their own, all read on one partition of events
    and hopping to one other partition, where their groups live (so one commit sends them as one record)."""
    processor = broker.processor
    assert isinstance(processor, RouterProcessor)

    def group_of(name: str) -> str:
        ev = decode(InboundEvent, alert(0, name))
        return route_step(TicketInput(group_key=ev.dedup_key, event=ev), processor.config())[0].group_key

    home = partition_of(group_of("G0").encode(), 4)
    names = [n for n in (f"G{j}" for j in range(200)) if partition_of(group_of(n).encode(), 4) == home][:count]
    picked: list[tuple[str, str, str]] = []
    for name in names:
        dedup = next(
            d for d in (f"am/{name}-{k}" for k in range(10_000)) if partition_of(d.encode(), 4) == (home + 1) % 4
        )
        picked.append((group_of(name), name, dedup))
    return home, picked


def test_an_item_of_a_batch_that_cannot_be_decoded_is_dead_lettered_alone_and_the_others_applied(make: Make) -> None:
    broker, topics = make()
    home, picked = hops_in_one_batch(broker, 3)
    bad_group = picked[1][0]
    broker.tasks[home].tables[ASSIGNMENTS][bad_group.encode()] = b'{"ticket": "tl-x"}'  # e.g. another release's
    for i, (_, name, dedup) in enumerate(picked):
        ev = decode(InboundEvent, alert(i, name)).model_copy(update={"dedup_key": dedup})
        broker.produce(topics.events.name, dedup.encode(), encode(ev))
    broker.run()
    [hop] = broker.records(topics.grouped.name)
    assert len(grouped_inputs("", hop.value or b"")) == 3, "the three hops travelled as one record"
    opened = sorted(c.ticket.labels["alertname"] for c in changes(broker, topics) if c.change is Change.opened)
    assert opened == [picked[0][1], picked[2][1]], "the items before and after the bad one are applied"
    [dead] = [decode(DeadLetter, r.value) for r in broker.records(topics.deadletter.name)]
    assert decode_input(dead.value.encode()).group_key == bad_group, "the bad item alone, as a record of one"
    assert (dead.key, dead.topic, dead.offset) == (bad_group, topics.grouped.name, hop.offset)
    assert "item 2 of 3" in dead.reason and "invalid KeyState" in dead.reason


def test_an_item_of_a_batch_whose_handling_raises_is_dead_lettered_alone_when_read_again(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug hit by one item of a batch of hops: the transaction is aborted (nothing of the batch applied), and
    read again the batch loses only that item to the dead letter, as a record of one would; the others apply
    once."""
    broker, topics = make()
    processor = broker.processor
    assert isinstance(processor, RouterProcessor)
    home, picked = hops_in_one_batch(broker, 3)
    items = []
    for i, (_, name, dedup) in enumerate(picked):
        ev = decode(InboundEvent, alert(i, name)).model_copy(update={"dedup_key": dedup})
        items.append(route_step(TicketInput(group_key=dedup, event=ev), processor.config())[0])
    value = b"[" + b",".join(encode_input(item) for item in items) + b"]"
    batch = Record(topics.grouped.name, home, 7, items[0].group_key.encode(), value, (), 0)
    assign = processor.assign

    def buggy(task: Task, item: TicketInput) -> None:
        assign(task, item)
        if item.event.event_id == "e1-firing":
            raise RuntimeError("a bug, after the item changed things")

    monkeypatch.setattr(processor, "assign", buggy)
    config = TxConfig("unused:9092", "u.router", processor.topics, 4, deadletter_topic=topics.deadletter.name)
    driver = TransactionalDriver(config, processor)
    task = driver.tasks[home] = Task(home, driver.changelogs)
    assert driver._handle(task, [batch]) == [] and home in driver.broken, "the bug broke the task"
    task = driver.tasks[home] = Task(home, driver.changelogs)  # rebuilt: its transaction aborted, nothing kept
    driver.broken.discard(home)
    assert driver._handle(task, [batch]) == [batch]
    task.flush()
    opened = [decode(TicketEvent, s.value) for s in task.queued if s.topic == topics.tickets.name]
    assert [c.ticket.labels["alertname"] for c in opened] == [picked[0][1], picked[2][1]], "the others applied"
    [dead] = [decode(DeadLetter, s.value) for s in task.queued if s.topic == topics.deadletter.name]
    assert decode_input(dead.value.encode()) == items[1], "the item that raised alone"
    assert (dead.topic, dead.offset, dead.reason) == (
        topics.grouped.name,
        7,
        "item 2 of 3: handling failed: RuntimeError",
    )
    assert task.dead_lettered == ["handling_failed"]


def test_times_written_without_an_offset_are_utc_and_neither_an_event_nor_a_snooze_is_dead_lettered(
    make: Make,
) -> None:
    """Intake takes ``2026-11-24 10:00:00`` as UTC (as the API says); its router compares it with aware times."""
    broker, topics = make()
    naive = alert(1).replace(b'Z"', b'"')
    assert b'"occurred_at":"' in naive and b'Z"' not in naive
    broker.produce(topics.events.name, b"am/x-1", naive)
    broker.run()
    [opened] = changes(broker, topics)
    assert opened.ticket.first_seen.tzinfo is not None
    snooze = encode(
        Command(
            command_id="c1",
            ticket_id=opened.ticket.ticket_id,
            action=Action.snooze,
            actor="ann",
            reason="",
            until=datetime.now(UTC).replace(microsecond=0) + timedelta(days=1),
            issued_at=datetime.now(UTC),
            trace_id="tc",
        )
    )
    naive_snooze = snooze.replace(b'Z"', b'"')
    assert naive_snooze.count(b'Z"') < snooze.count(b'Z"')
    broker.produce(topics.commands.name, opened.ticket.ticket_id.encode(), naive_snooze)
    broker.run()
    assert list(broker.records(topics.deadletter.name)) == []
    assert [c.change for c in changes(broker, topics)] == [Change.opened, Change.snoozed]
