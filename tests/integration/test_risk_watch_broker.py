"""The router's risk watch on the real broker: a week of one ticket an hour in the read model, then a burst in the
last hour, sends one warning alert to the events topic (the same again the next round: the same event id), and a
calm hour with the warning ticket open sends its resolution."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from services.router.projects import ProjectsConfig
from services.router.risk_watch import RiskWatch
from services.router.sender import KafkaSender
from shared.events import Change, EventStatus, InboundEvent, TicketEvent
from shared.infra.config import ConfigWatcher
from shared.rules.risk import SOURCE
from shared.store import db
from shared.streaming.codec import decode
from shared.streaming.topics import TopicSpec, ensure_topics
from tests.support.kafka_io import read_all
from tests.unit.factories import ticket

pytestmark = pytest.mark.integration

PROJECTS = """
projects:
  - name: webshop
    customer: acme
    matchers: ['customer="acme"']
    go_live: 2026-01-01T00:00:00+00:00
    implementation: {team: implementation}
    operations: {team: operations}
"""


def opened(tid: str, at: datetime, **over: object) -> TicketEvent:
    t = ticket(**{"ticket_id": tid, "opened_at": at, "project": "webshop", **over})
    return TicketEvent(change_id=f"{tid}:1", change=Change.opened, actor="r", at=at, ticket=t, trace_id="t")


def test_a_burst_is_warned_on_the_events_topic_and_a_calm_hour_resolves_it(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    engine = db.make_engine(f"sqlite:///{tmp_path / 'rm.db'}")
    db.init_db(engine)
    week = [opened(f"h{h}", now - timedelta(hours=h, minutes=30)) for h in range(1, 169)]
    db.project(engine, [*week, *(opened(f"b{m}", now - timedelta(minutes=m + 1)) for m in range(12))])
    (tmp_path / "projects.yaml").write_text(PROJECTS)
    topic = f"risk-{time.time_ns()}.events"
    asyncio.run(ensure_topics(kafka_bootstrap, [TopicSpec(topic, 1, "project", "risk warnings (test)")]))
    sender = KafkaSender(kafka_bootstrap)
    watch = RiskWatch(
        ConfigWatcher(tmp_path / "projects.yaml", ProjectsConfig), engine, topic, sender, CollectorRegistry()
    )

    async def rounds(n: int) -> None:
        try:
            for _ in range(n):
                await watch.round()
        finally:
            await sender.stop()

    asyncio.run(rounds(2))
    sent = [decode(InboundEvent, r.value) for r in asyncio.run(read_all(kafka_bootstrap, topic, expect=2))]
    assert [(e.status, e.dedup_key, e.labels["risk"]) for e in sent] == [
        (EventStatus.firing, "risk/webshop/tickets", "tickets")
    ] * 2
    assert sent[0].event_id == sent[1].event_id, "a second round (or a second router) sends the same event"
    assert "12 tickets in the last hour" in sent[0].annotations["description"]

    # the warning's ticket is open and the burst is over: the next round resolves it
    warning = opened("w", now, source=SOURCE, labels={"project": "webshop", "risk": "tickets"})
    with engine.begin() as conn:
        conn.execute(db.TICKETS.delete().where(db.TICKETS.c.ticket_id.like("b%")))
    db.project(engine, [warning])
    asyncio.run(rounds(1))
    sent = [decode(InboundEvent, r.value) for r in asyncio.run(read_all(kafka_bootstrap, topic, expect=3))]
    assert (sent[-1].status, sent[-1].dedup_key) == (EventStatus.resolved, "risk/webshop/tickets")
