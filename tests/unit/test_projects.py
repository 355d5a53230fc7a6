from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from services.router.project_metrics import ProjectGauges
from services.router.projects import Phase, ProjectsConfig, ProjectStatus, apply_project, project_statuses
from services.router.rules import RouteDecision
from services.sla.clocks import start_clock
from services.sla.firing import fire_due
from services.sla.policy import SlaConfig
from shared.infra.config import ConfigWatcher
from tests.unit.factories import ticket

GO_LIVE = datetime(2026, 11, 1, 1, 0, tzinfo=UTC)
PROJECTS = ProjectsConfig.model_validate(
    {
        "projects": [
            {
                "name": "webshop",
                "customer": "acme",
                "matchers": ['customer="acme"'],
                "go_live": GO_LIVE.isoformat(),
                "implementation": {"team": "impl", "engineers": ["ian", "ivy"]},
                "operations": {"team": "ops"},
            },
            {
                "name": "short",
                "customer": "initech",
                "matchers": ['customer="initech"', 'env!="test"'],
                "go_live": GO_LIVE.isoformat(),
                "hypercare": "7d",
                "implementation": {"team": "impl2"},
                "operations": {"team": "ops2", "engineers": ["olga"]},
            },
        ]
    }
)
BASE = RouteDecision(team="web", priority="P2", policy="default", rule="root > web", watchers=("ops", "sec"))
END = GO_LIVE + timedelta(days=30)


def at(when: datetime, **labels: str) -> RouteDecision:
    return apply_project(BASE, labels or {"customer": "acme"}, PROJECTS, when)


@pytest.mark.parametrize(
    ("when", "phase"),
    [
        (GO_LIVE - timedelta(seconds=1), Phase.pre_go_live),
        (GO_LIVE, Phase.hypercare),
        (END - timedelta(seconds=1), Phase.hypercare),
        (END, Phase.operations),
    ],
)
def test_phase_edges(when: datetime, phase: Phase) -> None:
    assert PROJECTS.projects[0].phase(when) is phase
    assert at(when).phase == phase.value


def test_each_projects_status_says_its_phase_and_its_dates() -> None:
    week = GO_LIVE + timedelta(days=8)  # webshop (30 days) still in hypercare, short (7 days) handed over
    assert project_statuses(PROJECTS, week) == [
        ProjectStatus("webshop", "acme", Phase.hypercare, GO_LIVE, END),
        ProjectStatus("short", "initech", Phase.operations, GO_LIVE, GO_LIVE + timedelta(days=7)),
    ]
    assert {s.phase for s in project_statuses(PROJECTS, GO_LIVE - timedelta(days=1))} == {Phase.pre_go_live}
    assert project_statuses(ProjectsConfig(), week) == []


def test_the_project_gauges_show_the_current_phase_as_the_router_holds_projects_yaml(tmp_path: Path) -> None:
    path = tmp_path / "projects.yaml"
    written = PROJECTS.model_dump(mode="json", exclude_defaults=True)
    written["projects"][1]["hypercare"] = "7d"
    path.write_text(yaml.safe_dump(written))
    now = [GO_LIVE + timedelta(days=8)]
    registry = CollectorRegistry()
    registry.register(ProjectGauges(ConfigWatcher(path, ProjectsConfig), lambda: now[0]))

    def phases() -> dict[tuple[str, str, str], float]:
        return {
            (s.labels["project"], s.labels["customer"], s.labels["phase"]): s.value
            for family in registry.collect()
            for s in family.samples
            if s.name == "ticketloop_project_phase_info"
        }

    assert phases() == {("webshop", "acme", "hypercare"): 1, ("short", "initech", "operations"): 1}
    ends = {"project": "webshop", "customer": "acme"}
    assert registry.get_sample_value("ticketloop_project_hypercare_ends_timestamp_seconds", ends) == END.timestamp()
    assert registry.get_sample_value("ticketloop_project_go_live_timestamp_seconds", ends) == GO_LIVE.timestamp()
    now[0] = END  # the clock moves on: the phase with it, no reload needed
    assert phases() == {("webshop", "acme", "operations"): 1, ("short", "initech", "operations"): 1}


def test_during_hypercare_the_implementation_engineer_owns_and_operations_watches() -> None:
    d = at(GO_LIVE + timedelta(days=3))
    assert (d.team, d.person, d.next_level, d.project, d.customer) == ("impl", "ian", None, "webshop", "acme")
    assert d.watchers == ("ops", "sec"), "operations first, the route's own watchers kept, no duplicates"
    assert (d.priority, d.policy, d.rule) == ("P2", "default", "root > web"), "the route still sets the rest"
    assert "project webshop (acme), phase hypercare, hypercare until 2026-12-01" in d.explain()


def test_after_hypercare_operations_owns_and_implementation_is_the_next_level() -> None:
    d = at(END + timedelta(hours=1))
    assert (d.team, d.person, d.next_level) == ("ops", None, "impl")
    assert d.watchers == ("sec",)
    assert "hypercare ended 2026-12-01" in d.explain()
    short = at(GO_LIVE + timedelta(days=8), customer="initech")
    assert (short.team, short.person, short.next_level) == ("ops2", "olga", "impl2")


def test_before_go_live_implementation_owns() -> None:
    d = at(GO_LIVE - timedelta(days=1))
    assert (d.team, d.phase) == ("impl", "pre-go-live")
    assert "before go-live" in d.explain()


def test_events_outside_any_project_keep_the_route_decision() -> None:
    assert at(END, customer="other") == BASE
    assert at(END, customer="initech", env="test") == BASE


@given(st.integers(min_value=-60 * 86400, max_value=120 * 86400))
def test_owner_is_implementation_exactly_until_hypercare_ends(offset_s: int) -> None:
    when = GO_LIVE + timedelta(seconds=offset_s)
    d = at(when)
    assert (d.team == "impl") == (when < END)
    assert (d.next_level == "impl") == (when >= END)
    assert d.team not in d.watchers


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="unique"):
        ProjectsConfig.model_validate(
            {"projects": [PROJECTS.projects[0].model_dump(), PROJECTS.projects[0].model_dump()]}
        )
    bad = {**PROJECTS.projects[0].model_dump(), "go_live": "2026-11-01T09:00:00"}
    with pytest.raises(ValueError, match="timezone"):
        ProjectsConfig.model_validate({"projects": [bad]})


def test_escalation_level_next_goes_to_the_next_level_or_the_owner() -> None:
    config = SlaConfig.model_validate(
        {"policies": {"default": {"acknowledge": {"P1": "5m"}, "escalation": [{"after": 0, "team": "next"}]}}}
    )
    due = ticket().opened_at + timedelta(minutes=5)
    _, breached = fire_due(start_clock(ticket(next_level="impl"), config), due)
    esc, _ = fire_due(breached, due)
    assert esc is not None and (esc.kind, esc.target_team) == ("escalation", "impl")
    _, breached = fire_due(start_clock(ticket(), config), due)
    esc, _ = fire_due(breached, due)
    assert esc is not None and (esc.kind, esc.target_team) == ("escalation", "ops")
