"""The router as a process on the real broker: a storm groups into tickets with exact counts, re-sent events are
not counted twice, and poison messages go to deadletter with the reason while the good ones still flow."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from deploy.local.kafka_local import free_port
from deploy.local.stack import Stack
from shared import db
from shared.codec import encode
from shared.events import EventKind, EventStatus, InboundEvent, Severity
from shared.topics import Topics, ensure_topics
from tests.support.configs import write_config
from tests.support.kafka_io import produce, read_all

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 24, 9, tzinfo=UTC)


def ev(key: str, n: int, *, status: EventStatus = EventStatus.firing, service: str = "web") -> InboundEvent:
    return InboundEvent(
        event_id=f"{key}-{status.value}-{n}",
        kind=EventKind.alert,
        source="am",
        dedup_key=f"am/{key}",
        status=status,
        summary=f"{key} is down",
        severity=Severity.critical,
        labels={"service": service},
        occurred_at=T0 + timedelta(seconds=n),
        received_at=T0,
        trace_id=f"tr-{key}-{n}",
    )


def test_storm_groups_exactly_and_poison_goes_to_deadletter(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"it-router-{time.time_ns()}."
    topics = Topics(prefix, 4)
    asyncio.run(ensure_topics(kafka_bootstrap, topics.all()))
    keys = [f"svc{i}" for i in range(5)]
    storm = [ev(k, n, service="web" if k == "svc0" else "db") for n in range(200) for k in keys]
    resent = storm[:50]  # the same events again, as a retrying sender would
    poison = [("am/bad", b"this is not json"), ("am/bad2", orjson.dumps({"schema_version": 1, "event_id": 7}))]
    resolve = [ev("svc4", 999, status=EventStatus.resolved)]
    records = [(e.dedup_key, encode(e)) for e in storm + resent] + poison + [(e.dedup_key, encode(e)) for e in resolve]
    asyncio.run(produce(kafka_bootstrap, topics.events.name, records))

    database = f"sqlite:///{tmp_path / 'db.sqlite'}"
    stack = Stack(
        kafka_bootstrap,
        database,
        write_config(tmp_path),
        tmp_path / "logs",
        free_port(),
        9,
        extra_env={"TICKETLOOP_TOPIC_PREFIX": prefix},
    )
    stack.start("router")
    engine = db.make_engine(database)
    try:
        deadline = time.monotonic() + 120
        while True:
            stack.check_alive()
            try:
                rows = db.list_tickets(engine)
            except Exception:  # noqa: BLE001 - the router creates the tables when it starts
                rows = []
            if len(rows) == 5 and all(r.occurrences == 200 for r in rows) and any(r.state == "resolved" for r in rows):
                break
            assert time.monotonic() < deadline, (
                f"router did not converge: {[(r.dedup_key, r.occurrences, r.state) for r in rows]}"
            )
            time.sleep(0.5)
        dead = asyncio.run(read_all(kafka_bootstrap, topics.deadletter.name, expect=2))
    finally:
        stack.stop_all()
    by_key = {r.dedup_key: r for r in rows}
    assert by_key["am/svc0"].team == "web-team"
    assert by_key["am/svc1"].team == "operations"
    assert by_key["am/svc4"].state == "resolved"
    assert {r.state for k, r in by_key.items() if k != "am/svc4"} == {"open"}
    reasons = {orjson.loads(d.value)["key"]: orjson.loads(d.value)["reason"] for d in dead}
    assert "malformed JSON" in reasons["am/bad"]
    assert "invalid InboundEvent" in reasons["am/bad2"]
    assert (
        orjson.loads(next(d.value for d in dead if d.key == topics.events.name.encode()))["topic"] == topics.events.name
    )


def test_routing_changes_apply_without_restart_and_bad_files_are_refused(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"it-reload-{time.time_ns()}."
    topics = Topics(prefix, 4)
    asyncio.run(ensure_topics(kafka_bootstrap, topics.all()))
    config = write_config(tmp_path)
    database = f"sqlite:///{tmp_path / 'db.sqlite'}"
    stack = Stack(
        kafka_bootstrap,
        database,
        config,
        tmp_path / "logs",
        free_port(),
        9,
        extra_env={"TICKETLOOP_TOPIC_PREFIX": prefix},
    )
    stack.start("router")
    engine = db.make_engine(database)

    def team_of(key: str) -> str:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            stack.check_alive()
            try:
                found = [r for r in db.list_tickets(engine) if r.dedup_key == f"am/{key}"]
            except Exception:  # noqa: BLE001 - tables appear when the router has started
                found = []
            if found:
                return found[0].team
            time.sleep(0.3)
        raise AssertionError(f"no ticket for {key}")

    def send(key: str) -> None:
        e = ev(key, 0, service="web")
        asyncio.run(produce(kafka_bootstrap, topics.events.name, [(e.dedup_key, encode(e))]))

    routing = config / "routing.yaml"
    try:
        send("before")
        assert team_of("before") == "web-team"
        routing.write_text(routing.read_text().replace("team: web-team", "team: web-platform"))
        log = stack.log_path("router")
        deadline = time.monotonic() + 60
        while "routing_reloaded" not in log.read_text():
            assert time.monotonic() < deadline, "the router never reloaded routing.yaml"
            time.sleep(0.3)
        send("after")
        assert team_of("after") == "web-platform"
        routing.write_text("route:\n  routes: [oops\n")
        while "routing_rejected_keeping_running_rules" not in log.read_text():
            assert time.monotonic() < deadline, "the router never noticed the bad file"
            time.sleep(0.3)
        send("still")
        assert team_of("still") == "web-platform"
    finally:
        stack.stop_all()


def test_recurrence_reopens_within_the_window_and_opens_a_new_ticket_after_it(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = f"it-reopen-{time.time_ns()}."
    topics = Topics(prefix, 4)
    asyncio.run(ensure_topics(kafka_bootstrap, topics.all()))
    config = write_config(tmp_path)
    (config / "routing.yaml").write_text("reopen_window: 3s\nroute:\n  team: operations\n")
    database = f"sqlite:///{tmp_path / 'db.sqlite'}"
    stack = Stack(
        kafka_bootstrap,
        database,
        config,
        tmp_path / "logs",
        free_port(),
        9,
        extra_env={"TICKETLOOP_TOPIC_PREFIX": prefix},
    )
    stack.start("router")
    engine = db.make_engine(database)

    def tickets(key: str) -> list[db.TicketRow]:
        try:
            return sorted((r for r in db.list_tickets(engine) if r.dedup_key == f"am/{key}"), key=lambda r: r.opened_at)
        except Exception:  # noqa: BLE001 - tables appear when the router has started
            return []

    def until(what: str, probe: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 90
        while not probe():
            stack.check_alive()
            assert time.monotonic() < deadline, f"gave up waiting for {what}"
            time.sleep(0.3)

    def send(*events: InboundEvent) -> None:
        asyncio.run(produce(kafka_bootstrap, topics.events.name, [(e.dedup_key, encode(e)) for e in events]))

    def fresh(e: InboundEvent) -> InboundEvent:
        return e.model_copy(update={"received_at": datetime.now(UTC)})

    try:
        send(fresh(ev("quick", 0)), fresh(ev("late", 0)))
        until("two tickets", lambda: bool(tickets("quick")) and bool(tickets("late")))
        send(fresh(ev("quick", 1, status=EventStatus.resolved)), fresh(ev("late", 1, status=EventStatus.resolved)))
        until(
            "both resolved", lambda: tickets("quick")[0].state == "resolved" and tickets("late")[0].state == "resolved"
        )
        send(fresh(ev("quick", 2)))
        until("quick reopened", lambda: tickets("quick")[0].state == "open")
        time.sleep(4)  # past the 3 s window
        send(fresh(ev("late", 2)))
        until("a second ticket for late", lambda: len(tickets("late")) == 2)
    finally:
        stack.stop_all()
    [quick] = tickets("quick")
    assert (quick.reopened, quick.occurrences) == (1, 2)
    old, new = tickets("late")
    assert (old.state, old.reopened) == ("resolved", 0)
    assert (new.state, new.occurrences) == ("open", 1)


def test_hypercare_handover_on_the_broker(kafka_bootstrap: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    projects = f"""
projects:
  - name: fresh
    customer: acme
    matchers: ['customer="acme"']
    go_live: {(now - timedelta(days=2)).isoformat()}
    implementation: {{team: implementation, engineers: [ian]}}
    operations: {{team: operations}}
  - name: settled
    customer: globex
    matchers: ['customer="globex"']
    go_live: {(now - timedelta(days=40)).isoformat()}
    implementation: {{team: implementation, engineers: [ines]}}
    operations: {{team: operations}}
"""
    prefix = f"it-hypercare-{time.time_ns()}."
    topics = Topics(prefix, 4)
    asyncio.run(ensure_topics(kafka_bootstrap, topics.all()))
    database = f"sqlite:///{tmp_path / 'db.sqlite'}"
    stack = Stack(
        kafka_bootstrap,
        database,
        write_config(tmp_path, projects=projects),
        tmp_path / "logs",
        free_port(),
        9,
        extra_env={"TICKETLOOP_TOPIC_PREFIX": prefix},
    )
    events = [
        ev(key, 0).model_copy(update={"labels": {"customer": customer}, "received_at": now})
        for key, customer in (("acme-1", "acme"), ("globex-1", "globex"))
    ]
    asyncio.run(produce(kafka_bootstrap, topics.events.name, [(e.dedup_key, encode(e)) for e in events]))
    stack.start("router")
    engine = db.make_engine(database)
    try:
        deadline = time.monotonic() + 90
        while True:
            stack.check_alive()
            try:
                rows = {r.dedup_key: r for r in db.list_tickets(engine)}
            except Exception:  # noqa: BLE001 - tables appear when the router has started
                rows = {}
            if len(rows) == 2:
                break
            assert time.monotonic() < deadline, "tickets did not appear"
            time.sleep(0.3)
        acme = rows["am/acme-1"]
        found = db.get_ticket(engine, acme.ticket_id)
    finally:
        stack.stop_all()
    assert (acme.team, acme.person, acme.watchers, acme.phase, acme.project) == (
        "implementation",
        "ian",
        ["operations"],
        "hypercare",
        "fresh",
    )
    globex = rows["am/globex-1"]
    assert (globex.team, globex.person, globex.next_level, globex.phase) == (
        "operations",
        None,
        "implementation",
        "operations",
    )
    assert found is not None
    assert "project fresh (acme), phase hypercare" in found[1][0].reason, "the timeline says why"


def test_a_storm_of_10000_alerts_in_20_groups_is_20_tickets(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"it-storm-{time.time_ns()}."
    topics = Topics(prefix, 4)
    asyncio.run(ensure_topics(kafka_bootstrap, topics.all()))
    config = write_config(tmp_path)
    (config / "routing.yaml").write_text("route:\n  team: operations\n  group_by: [alertname, cluster]\n")
    now = datetime.now(UTC)
    storm = [
        InboundEvent(
            event_id=f"storm-{i}",
            kind=EventKind.alert,
            source="am",
            dedup_key=f"am/host-{i}",
            status=EventStatus.firing,
            summary="node down",
            severity=Severity.critical,
            labels={"alertname": "NodeDown", "cluster": f"c{i % 20}", "instance": f"host-{i}"},
            occurred_at=now,
            received_at=now,
            trace_id=f"t{i}",
        )
        for i in range(10_000)
    ]
    repeats = storm[:300]  # the same alerts re-sent: not new alerts, not new tickets
    asyncio.run(produce(kafka_bootstrap, topics.events.name, [(e.dedup_key, encode(e)) for e in storm + repeats]))
    database = f"sqlite:///{tmp_path / 'db.sqlite'}"
    stack = Stack(
        kafka_bootstrap,
        database,
        config,
        tmp_path / "logs",
        free_port(),
        9,
        extra_env={"TICKETLOOP_TOPIC_PREFIX": prefix},
    )
    stack.start("router")
    engine = db.make_engine(database)
    try:
        deadline = time.monotonic() + 300
        while True:
            stack.check_alive()
            try:
                rows = db.list_tickets(engine, limit=1000)
            except Exception:  # noqa: BLE001 - tables appear when the router has started
                rows = []
            if len(rows) >= 20 and sum(r.alerts for r in rows) == 10_000:
                break
            assert time.monotonic() < deadline, (
                f"storm not absorbed: {len(rows)} tickets, {sum(r.alerts for r in rows)} alerts"
            )
            time.sleep(1)
        openings = [db.get_ticket(engine, r.ticket_id) for r in rows]
    finally:
        stack.stop_all()
    assert len(rows) == 20
    assert {r.alerts for r in rows} == {500}
    assert {r.alerts_firing for r in rows} == {500}
    assert sum(r.occurrences for r in rows) == 10_000, "repeats of the same event are not counted twice"
    assert {r.labels["cluster"] for r in rows} == {f"c{i}" for i in range(20)}
    assert all(o is not None and [t.change for t in o[1]].count("opened") == 1 for o in openings)
