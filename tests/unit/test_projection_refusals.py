"""The SQL projection's splitter: a refused change next to an escalation is left out, the escalation written."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

from prometheus_client import CollectorRegistry

from services.router.projects import ProjectsConfig
from services.router.rules import RoutingConfig
from services.router.service import Router, RouterDeps
from shared.events import Change, Escalation, TicketEvent
from shared.infra.config import ConfigWatcher
from shared.rules.oncall import TeamsConfig
from shared.store import db
from shared.streaming.driver import DriverConfig
from shared.streaming.topics import Topics
from shared.streaming.transactional import TxConfig
from tests.unit.factories import T0, ticket


def test_a_refused_change_batched_with_one_escalation_is_left_out_without_recursing_forever(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'rm.db'}")
    db.init_db(engine)
    (tmp_path / "routing.yaml").write_text("route:\n  team: ops\n")
    (tmp_path / "projects.yaml").write_text("projects: []\n")
    registry = CollectorRegistry()
    deps = RouterDeps(
        Topics("u.", 4),
        ConfigWatcher(tmp_path / "routing.yaml", RoutingConfig),
        ConfigWatcher(tmp_path / "projects.yaml", ProjectsConfig),
        engine,
        registry,
        ConfigWatcher(tmp_path / "teams.yaml", TeamsConfig, optional=True),
    )
    router = Router(deps, TxConfig("x", "g", (), 4), DriverConfig("x", "g", ()))
    beyond = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-12)))
    bad = TicketEvent(
        change_id="tl-b:1",
        change=Change.opened,
        actor="am",
        at=T0,
        ticket=ticket(ticket_id="tl-b", snoozed_until=beyond),
        trace_id="t",
    )
    esc = Escalation(
        escalation_id="tl-1:acknowledge:1",
        ticket_id="tl-1",
        level=1,
        target_team="leads",
        deadline=T0,
        fired_at=T0,
        reason="not acknowledged",
        ticket=ticket(),
        trace_id="t",
    )
    asyncio.run(router.write([bad], [esc]))
    assert registry.get_sample_value("ticketloop_router_projection_refused_total") == 1
