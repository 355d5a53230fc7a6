"""The hypercare handover against the router's other timers (a held notification, a flapping ticket settling) and
against a hypercare extended after the ticket opened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.router.handover import Seen, nudges
from services.router.service import TIMERS, RouterProcessor
from shared.events import Change, EventStatus
from shared.streaming.codec import encode
from tests.unit.factories import event
from tests.unit.test_router_service import changes, router_broker


def projects_yaml(go_live: datetime, hypercare: str) -> str:
    return f"""
projects:
  - name: webshop
    customer: acme
    matchers: ['project="webshop"']
    go_live: {go_live.isoformat()}
    hypercare: {hypercare}
    implementation: {{team: implementation, engineers: [ian]}}
    operations: {{team: operations}}
"""


def test_group_wait_notice_due_before_the_handover_still_goes_out_when_both_are_late(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    routing = "route:\n  team: ops\n  group_by: [alertname]\n  group_wait: 5s\n"
    go_live = now - timedelta(days=1)
    # hypercare ends 10 s from now; the group_wait notice is due in 5 s: both are past when the timer runs late
    broker, topics = router_broker(tmp_path, routing, projects_yaml(go_live, f"{86400 + 10}s"))
    ev = event(
        event_id="h1",
        dedup_key="am/a",
        labels={"alertname": "Disk", "project": "webshop"},
        occurred_at=now,
        received_at=now,
    )
    broker.produce(topics.events.name, b"am/a", encode(ev))
    broker.run()
    for s in (30, 31, 32, 33):
        broker.punctuate((now + timedelta(seconds=s)).timestamp())
        broker.run()
    out = [c.change for c in changes(broker, topics)]
    timers = {k: v for t in broker.tasks.values() for k, v in t.tables[TIMERS].items()}
    assert Change.reassigned in out
    assert Change.group_notified in out, f"the held first notification never went out: {out}, timers {timers}"
    assert timers == {}, f"a timer entry is left due in the past, firing every punctuation: {timers}"


def test_extended_hypercare_does_not_record_a_handover_to_the_same_owner(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    go_live = now - timedelta(days=1)
    broker, topics = router_broker(tmp_path, "route:\n  team: ops\n", projects_yaml(go_live, f"{86400 + 10}s"))
    ev = event(
        event_id="h1",
        dedup_key="am/a",
        labels={"alertname": "Disk", "project": "webshop"},
        occurred_at=now,
        received_at=now,
    )
    broker.produce(topics.events.name, b"am/a", encode(ev))
    broker.run()
    # hypercare is extended by 30 days after the ticket opened
    (tmp_path / "projects.yaml").write_text(projects_yaml(go_live, "31d"))
    processor = broker.processor
    assert isinstance(processor, RouterProcessor)
    assert processor.deps.projects.poll() == "reloaded"
    broker.punctuate((now + timedelta(seconds=20)).timestamp())
    broker.run()
    out = changes(broker, topics)
    moved = [c for c in out if c.change is Change.reassigned]
    assert moved == [], f"a 'handover' to the same owner in the middle of hypercare: {[m.reason for m in moved]}"


def test_a_flapping_ticket_due_to_settle_before_the_handover_still_settles(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    routing = "route:\n  team: ops\nflapping: {changes: 3, within: 10m, stable_for: 5s}\n"
    broker, topics = router_broker(tmp_path, routing, projects_yaml(now - timedelta(days=1), f"{86400 + 10}s"))
    for n, status in enumerate([EventStatus.firing, EventStatus.resolved] * 2):
        ev = event(
            event_id=f"f{n}",
            dedup_key="am/a",
            status=status,
            labels={"alertname": "Disk", "project": "webshop"},
            occurred_at=now,
            received_at=now,
        )
        broker.produce(topics.events.name, b"am/a", encode(ev))
        broker.run()
    before = changes(broker, topics)
    assert before[-1].ticket.flapping, [c.change for c in before]
    for s in (30, 31, 32):
        broker.punctuate((now + timedelta(seconds=s)).timestamp())
        broker.run()
    last = changes(broker, topics)[-1].ticket
    assert last.state.value == "resolved", (
        f"still {last.state.value}, flapping={last.flapping}, {[c.change for c in changes(broker, topics)]}"
    )


def test_a_ticket_opened_before_hypercare_was_shortened_moves_on_the_watch_s_tick(tmp_path: Path) -> None:
    """Its own timer still has the old end (a month away); the project now ends an hour ago. The handover watch's
    tick (services/router/handover.py ``nudges``) moves it now, once, to operations."""
    now = datetime.now(UTC)
    go_live = now - timedelta(days=1)
    broker, topics = router_broker(tmp_path, "route:\n  team: ops\n", projects_yaml(go_live, "31d"))
    ev = event(
        event_id="s1",
        dedup_key="am/s",
        labels={"alertname": "Disk", "project": "webshop"},
        occurred_at=now,
        received_at=now,
    )
    broker.produce(topics.events.name, b"am/s", encode(ev))
    broker.run()
    opened = changes(broker, topics)[-1].ticket
    assert (opened.team, opened.phase) == ("implementation", "hypercare")
    (tmp_path / "projects.yaml").write_text(projects_yaml(go_live, "23h"))
    processor = broker.processor
    assert isinstance(processor, RouterProcessor)
    assert processor.deps.projects.poll() == "reloaded"
    project = processor.deps.projects.current.projects[0]
    seen = [Seen(opened.ticket_id, opened.summary, opened.priority, "open", "hypercare", None)]
    for _ in range(2):  # the watch sends it every round until the read model shows the move
        for tick in nudges(project, seen, now):
            broker.produce(topics.commands.name, tick.ticket_id.encode(), encode(tick))
        broker.run()
    moved = [c for c in changes(broker, topics) if c.change is Change.reassigned]
    assert len(moved) == 1, [c.reason for c in moved]
    assert moved[0].reason.startswith("handover: hypercare of project webshop ended")
    assert (moved[0].ticket.team, moved[0].ticket.phase) == ("operations", "operations")
    assert nudges(project, [Seen(opened.ticket_id, "", "P3", "open", "operations", "handover: ...")], now) == []
