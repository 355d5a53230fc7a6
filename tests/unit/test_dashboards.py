"""The Grafana dashboards stay true to the code: the committed JSON is what deploy/grafana/build.py makes (nobody
hand-edits it), every metric a panel queries is one the services register (a renamed metric would otherwise leave
an empty panel nobody notices), and no panel groups by ticket id."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from deploy.grafana import build
from services.intake.api import create_app
from services.intake.config import IntakeConfig
from services.intake.edge import IntakeDeps
from services.notifier.main import build as build_notifier
from services.router.main import build as build_router
from services.sla.main import build as build_sla
from shared.infra.settings import NotifierSettings, RouterSettings, SlaSettings
from shared.store import db
from shared.streaming.topics import Topics
from tests.fakes import FakePublisher

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((REPO / "deploy/grafana/dashboards").glob("*.json"))
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exposed_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    database = f"sqlite:///{tmp_path / 'm.db'}"
    monkeypatch.setenv("DATABASE_URL", database)
    registries = [CollectorRegistry() for _ in range(4)]  # one per service, as each process has its own
    build_router(RouterSettings(), registries[0])
    build_sla(SlaSettings(), registries[1])
    build_notifier(NotifierSettings(), registries[2])
    engine = db.make_engine(database)
    db.init_db(engine)
    create_app(IntakeDeps(IntakeConfig.model_validate({}), FakePublisher(), engine, Topics("t.", 2), registries[3]))
    return {
        family.name + suffix
        for registry in registries
        for family in registry.collect()
        for suffix in SUFFIXES.get(family.type, ("",))
    }


def test_there_is_an_sla_dashboard() -> None:
    assert any(p.name == "ticketloop-sla.json" for p in DASHBOARDS)


def test_the_committed_dashboards_are_what_the_generator_makes() -> None:
    made = build.files()
    assert sorted(made) == [p.name for p in DASHBOARDS], "run: .venv/bin/python -m deploy.grafana.build"
    for path in DASHBOARDS:
        assert path.read_text() == made[path.name], f"{path.name} differs: run .venv/bin/python -m deploy.grafana.build"


def test_panel_ids_are_unique_and_every_query_panel_has_a_query() -> None:
    for path in DASHBOARDS:
        panels = json.loads(path.read_text())["panels"]
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), path.name
        for panel in panels:
            if panel["type"] not in ("row", "text"):
                assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]


def test_a_series_born_inside_the_window_is_counted_from_zero() -> None:
    expr = build.counted('m{a="b"}', "1h", ["a"])
    assert expr == 'sum by (a) ((increase(m{a="b"}[1h]) and m{a="b"} offset 1h) or m{a="b"})'
    assert build.share("x", "y") == "(x or y * 0) / y"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_queries_metrics_the_services_expose(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dashboard = json.loads(path.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    assert exprs
    names = exposed_names(tmp_path, monkeypatch)
    unknown = {m for e in exprs for m in re.findall(r"ticketloop_[a-z_]+", e)} - names
    assert not unknown, f"{path.name} queries metrics no service exposes: {sorted(unknown)}"
    assert not any("ticket_id" in e for e in exprs), "ticket ids never become labels"


@pytest.mark.parametrize("title", ["Project phase", "Hypercare left"])
def test_a_projects_status_now_is_asked_at_the_range_s_end_only(title: str) -> None:
    """ticketloop_project_phase_info has one series per project and phase; asked over the range, a project that
    went live yesterday would show twice (pre-go-live and hypercare), and one whose hypercare ended in the range
    would still have hypercare left."""
    customers = json.loads((Path(build.__file__).parent / "dashboards/ticketloop-customers.json").read_text())
    panel = next(p for p in customers["panels"] if p.get("title") == title)
    assert [t.get("instant") for t in panel["targets"]] == [True] * len(panel["targets"]), panel["targets"]
