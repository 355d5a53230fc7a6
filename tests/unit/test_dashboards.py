"""The Grafana dashboards stay true to the code: every metric a panel queries is one the services register
(a renamed metric would otherwise leave an empty panel nobody notices), and no panel groups by ticket id."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from services.intake.metrics import IntakeMetrics, UnresolvedTickets
from services.notifier.main import build as build_notifier
from services.router.main import build as build_router
from services.sla.main import build as build_sla
from shared.infra.settings import NotifierSettings, RouterSettings, SlaSettings
from shared.store import db

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((REPO / "deploy/grafana/dashboards").glob("*.json"))
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exposed_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    database = f"sqlite:///{tmp_path / 'm.db'}"
    monkeypatch.setenv("DATABASE_URL", database)
    registry = CollectorRegistry()
    build_router(RouterSettings(), registry)
    build_sla(SlaSettings(), registry)
    build_notifier(NotifierSettings(), registry)
    IntakeMetrics(registry)
    engine = db.make_engine(database)
    db.init_db(engine)
    registry.register(UnresolvedTickets(engine))
    return {family.name + suffix for family in registry.collect() for suffix in SUFFIXES.get(family.type, ("",))}


def test_there_is_an_sla_dashboard() -> None:
    assert any(p.name == "ticketloop-sla.json" for p in DASHBOARDS)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_queries_metrics_the_services_expose(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dashboard = json.loads(path.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    assert exprs
    names = exposed_names(tmp_path, monkeypatch)
    unknown = {m for e in exprs for m in re.findall(r"ticketloop_[a-z_]+", e)} - names
    assert not unknown, f"{path.name} queries metrics no service exposes: {sorted(unknown)}"
    assert not any("ticket_id" in e for e in exprs), "ticket ids never become labels"
