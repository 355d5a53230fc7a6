"""The risk warning: the EWMA band of a project's own hourly ticket and breach counts, what is sent (and resolved),
and what the read model gives it (SQLite)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from sqlalchemy import Engine

from services.router.projects import ProjectsConfig
from services.router.risk_watch import RiskWatch
from shared.events import Change, Escalation, EventStatus, InboundEvent, TicketEvent
from shared.infra.config import ConfigWatcher
from shared.rules.risk import SOURCE, RiskSettings, ewma, hourly, judge, risk_events
from shared.store import db
from tests.unit.factories import ticket

NOW = datetime(2026, 12, 3, 12, 30, tzinfo=UTC)
S = RiskSettings()


def test_hourly_counts_put_the_last_60_minutes_last() -> None:
    times = [
        NOW - timedelta(minutes=1),
        NOW - timedelta(minutes=59),
        NOW - timedelta(minutes=61),
        NOW - timedelta(hours=5),
    ]
    assert hourly(times, NOW, 3) == [0, 1, 2]
    assert hourly([NOW + timedelta(minutes=1)], NOW, 3) == [0, 0, 0], "the future is not counted"


def test_ewma_of_a_flat_series_is_its_value_with_no_spread_and_weighs_recent_hours_more() -> None:
    assert ewma([2] * 100, 24) == (2.0, 0.0)
    mean_recent_high, _ = ewma([0] * 50 + [4] * 24, 24)
    mean_recent_low, _ = ewma([4] * 24 + [0] * 50, 24)
    assert mean_recent_high > 2 > mean_recent_low
    assert ewma([], 24) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("history", "current", "at_risk"),
    [
        ([2] * 168, 9, True),  # band 2 + 3 * max(0, 1) = 5
        ([2] * 168, 5, False),  # inside the band
        ([0] * 168, 4, False),  # above the band but fewer than min_count
        ([0] * 168, 5, True),
        ([0, 10] * 84, 12, False),  # a noisy project's spread is wide
    ],
)
def test_the_last_hour_is_at_risk_above_its_own_band(history: list[int], current: int, at_risk: bool) -> None:
    verdict = judge([*history, current], S)
    assert verdict.at_risk is at_risk
    assert verdict.explain("tickets", S).startswith(f"{current} tickets in the last hour; baseline ")


def burst(project: str, per_hour_before: int, last_hour: int) -> list[datetime]:
    """A week of ``per_hour_before`` tickets an hour, then ``last_hour`` in the last 60 minutes."""
    times = [NOW - timedelta(hours=h, minutes=30) for h in range(1, 169) for _ in range(per_hour_before)]
    return times + [NOW - timedelta(minutes=m + 1) for m in range(last_hour)]


def test_a_burst_is_warned_then_resolved_and_a_new_project_is_not_judged() -> None:
    history = {("webshop", "tickets"): burst("webshop", 1, 12), ("billing", "tickets"): burst("billing", 1, 1)}
    settings = {"webshop": S, "billing": S, "newshop": S}
    history[("newshop", "tickets")] = [NOW - timedelta(minutes=m) for m in range(20)]  # 20 in its first hour
    [warning] = risk_events(history, set(), settings, NOW)
    assert (warning.status, warning.labels) == (
        EventStatus.firing,
        {"alertname": "ProjectRiskRising", "project": "webshop", "risk": "tickets"},
    )
    assert warning.source == SOURCE and warning.dedup_key == "risk/webshop/tickets"
    assert warning.annotations["description"].startswith("12 tickets in the last hour; baseline 1.0 ± 0.0 an hour")
    again = risk_events(history, {("webshop", "tickets")}, settings, NOW + timedelta(seconds=20))
    assert [e.event_id for e in again] == [warning.event_id], "a second router in the same minute sends the same event"
    calm = {("webshop", "tickets"): burst("webshop", 1, 1)}
    [resolved] = risk_events(calm, {("webshop", "tickets")}, {"webshop": S}, NOW)
    assert (resolved.status, resolved.dedup_key) == (EventStatus.resolved, "risk/webshop/tickets")
    off = {"webshop": S.model_copy(update={"enabled": False})}
    assert risk_events(history, set(), off, NOW) == []


def test_breaches_rising_from_none_are_warned_once_the_project_has_a_baseline() -> None:
    history = {
        ("webshop", "tickets"): burst("webshop", 1, 1),
        ("webshop", "breaches"): [NOW - timedelta(minutes=m + 1) for m in range(6)],
    }
    [warning] = risk_events(history, set(), {"webshop": S}, NOW)
    assert warning.labels["risk"] == "breaches" and "SLA breach rate" in warning.summary


def test_the_read_model_gives_each_projects_openings_and_breaches_and_the_open_warnings(engine: Engine) -> None:
    def opened(tid: str, at: datetime, **over: object) -> TicketEvent:
        t = ticket(**{"ticket_id": tid, "opened_at": at, "project": "webshop", **over})
        return TicketEvent(change_id=f"{tid}:1", change=Change.opened, actor="r", at=at, ticket=t, trace_id="t")

    a = opened("a", NOW - timedelta(hours=2))
    warning = opened("w", NOW, source=SOURCE, labels={"project": "webshop", "risk": "tickets"})
    breach = Escalation.model_validate(
        {
            "escalation_id": "a:acknowledge:1:breach",
            "ticket_id": "a",
            "kind": "breach",
            "level": 1,
            "target_team": "ops",
            "deadline": NOW - timedelta(hours=1),
            "fired_at": NOW - timedelta(hours=1),
            "reason": "missed",
            "ticket": a.ticket,
            "trace_id": "t",
        }
    )
    db.project(
        engine, [a, opened("old", NOW - timedelta(days=9)), opened("none", NOW, project=None), warning], [breach]
    )
    history = db.risk_history(engine, NOW - timedelta(days=8), SOURCE)
    assert history == {("webshop", "tickets"): [a.ticket.opened_at], ("webshop", "breaches"): [breach.fired_at]}
    assert db.open_warnings(engine, SOURCE) == {("webshop", "tickets")}


def test_a_second_rise_after_a_resolution_is_a_new_event_and_a_warning_whose_project_stopped_judging_resolves() -> None:
    [first] = risk_events({("webshop", "tickets"): burst("webshop", 1, 12)}, set(), {"webshop": S}, NOW)
    later = NOW + timedelta(minutes=25)
    again = {("webshop", "tickets"): [*burst("webshop", 1, 12), *(later - timedelta(minutes=m) for m in range(12))]}
    [second] = risk_events(again, set(), {"webshop": S}, later)
    assert second.status is EventStatus.firing and second.event_id != first.event_id
    off = {"webshop": S.model_copy(update={"enabled": False})}
    for settings in (off, {}):
        [resolved] = risk_events({}, {("webshop", "tickets")}, settings, NOW)
        assert (resolved.status, resolved.dedup_key) == (EventStatus.resolved, "risk/webshop/tickets")


def test_the_warnings_own_breaches_are_not_the_projects(engine: Engine) -> None:
    t = ticket(ticket_id="w", opened_at=NOW, project="webshop", source=SOURCE, labels={"project": "webshop"})
    opened = TicketEvent(change_id="w:1", change=Change.opened, actor="r", at=NOW, ticket=t, trace_id="t")
    breach = Escalation.model_validate(
        {
            "escalation_id": "w:acknowledge:1:breach",
            "ticket_id": "w",
            "kind": "breach",
            "level": 1,
            "target_team": "ops",
            "deadline": NOW,
            "fired_at": NOW,
            "reason": "missed",
            "ticket": t,
            "trace_id": "t",
        }
    )
    db.project(engine, [opened], [breach])
    assert db.risk_history(engine, NOW - timedelta(days=8), SOURCE) == {}


def test_the_watch_resolves_an_open_warning_when_no_project_judges_risk_any_more(
    engine: Engine, tmp_path: Path
) -> None:
    warning = ticket(ticket_id="w", opened_at=NOW, source=SOURCE, labels={"project": "webshop", "risk": "tickets"})
    db.project(
        engine, [TicketEvent(change_id="w:1", change=Change.opened, actor="r", at=NOW, ticket=warning, trace_id="t")]
    )
    (tmp_path / "projects.yaml").write_text("projects: []\n")
    sent: list[InboundEvent] = []

    async def record(_topic: str, _key: str, value: BaseModel, _headers: Sequence[tuple[str, bytes]] | None) -> None:
        assert isinstance(value, InboundEvent)
        sent.append(value)

    watch = RiskWatch(
        ConfigWatcher(tmp_path / "projects.yaml", ProjectsConfig), engine, "events", record, CollectorRegistry()
    )
    asyncio.run(watch.round())
    assert [(e.status, e.dedup_key) for e in sent] == [(EventStatus.resolved, "risk/webshop/tickets")]
