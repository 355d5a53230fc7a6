"""Customer satisfaction: the reporter's answer on the ticket (router), the index and a project's goal (pure), and
the answers in the read model (SQLite)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from services.router.commands import apply_command
from services.router.lifecycle import TicketRecord
from shared.events import Action, Change, Command, EventKind, Ticket, TicketEvent, TicketState
from shared.rules.satisfaction import (
    SURVEY_WINDOW,
    Figures,
    SatisfactionGoal,
    comment_of,
    figures_of,
    judge_goal,
    rating_text,
)
from shared.store import db
from tests.unit.factories import T0, ticket

RESOLVED = T0 + timedelta(hours=2)


def report(state: TicketState = TicketState.resolved, **over: Any) -> Ticket:
    fields: dict[str, object] = {
        "kind": EventKind.feedback,
        "state": state,
        "resolved_at": RESOLVED if state in (TicketState.resolved, TicketState.closed) else None,
        "labels": {"reporter": "ann@acme.example", "category": "bug"},
        "project": "webshop",
        "customer": "acme",
        "priority": "P3",
    }
    fields.update(over)
    return ticket(**fields)


def rate(score: int, comment: str = "", command_id: str = "s1", at: datetime = RESOLVED) -> Command:
    return Command(
        command_id=command_id,
        ticket_id="tl-1",
        action=Action.rate,
        actor="ann@acme.example",
        reason=comment,
        score=score,
        issued_at=at,
        trace_id="t",
    )


def test_the_reporter_rates_a_resolved_report_and_may_change_the_answer_within_the_window() -> None:
    rec = TicketRecord(ticket=report(), seen=[])
    rec, out = apply_command(
        rec, rate(2, "slow answer", at=RESOLVED + timedelta(hours=1)), RESOLVED + timedelta(hours=1)
    )
    assert (rec.ticket.rating, rec.ticket.rated_at) == (2, RESOLVED + timedelta(hours=1))
    assert [(e.change, e.actor, e.reason) for e in out] == [
        (Change.rated, "ann@acme.example", "rated 2/5: slow answer")
    ]
    assert rec.ticket.state is TicketState.resolved, "an answer changes nothing else"
    later = RESOLVED + SURVEY_WINDOW - timedelta(seconds=1)
    rec, out = apply_command(rec, rate(5, command_id="s2", at=later), later)
    assert (rec.ticket.rating, out[0].reason) == (5, "rated 5/5")
    closed = RESOLVED + SURVEY_WINDOW
    rec2, out = apply_command(rec, rate(1, command_id="s3", at=closed), closed)
    assert out[0].change is Change.rejected and "closed 7 days after" in out[0].reason
    assert rec2.ticket.rating == 5


@pytest.mark.parametrize(
    ("ticket_", "why"),
    [
        (report(kind=EventKind.alert), "feedback ticket"),
        (report(state=TicketState.open), "cannot rate a ticket that is open"),
        (report(state=TicketState.acknowledged), "cannot rate a ticket that is acknowledged"),
    ],
)
def test_only_a_resolved_report_is_rated(ticket_: Ticket, why: str) -> None:
    rec, out = apply_command(TicketRecord(ticket=ticket_, seen=[]), rate(4), RESOLVED)
    assert out[0].change is Change.rejected and why in out[0].reason
    assert rec.ticket.rating is None


def test_a_closed_report_can_still_be_rated_and_a_repeated_command_counts_once() -> None:
    rec = TicketRecord(ticket=report(TicketState.closed), seen=[])
    rec, out = apply_command(rec, rate(4), RESOLVED)
    assert out[0].change is Change.rated
    again, out = apply_command(rec, rate(1), RESOLVED)
    assert (again.ticket.rating, out) == (4, [])


def test_a_rate_command_needs_a_score_from_one_to_five() -> None:
    with pytest.raises(ValueError, match="rate needs a score"):
        Command(command_id="c", ticket_id="t", action=Action.rate, actor="a", issued_at=T0, trace_id="t")
    with pytest.raises(ValueError, match="less than or equal to 5"):
        rate(6)


def test_a_ticket_nobody_rated_is_written_as_before_surveys() -> None:
    assert b"rating" not in report().__pydantic_serializer__.to_json(report())
    rated = report(rating=4, rated_at=RESOLVED)
    assert Ticket.model_validate_json(rated.__pydantic_serializer__.to_json(rated)) == rated


def test_index_is_the_share_of_fours_and_fives() -> None:
    assert figures_of([5, 4, 3, 1]) == Figures(4, 2)
    assert figures_of([5, 4, 3, 1]).index == 0.5
    assert figures_of([]).index is None
    assert comment_of(rating_text(3, "ok: not great"), 3) == "ok: not great"
    assert comment_of(rating_text(3, ""), 3) == ""


GOAL = SatisfactionGoal(index=0.9, within=timedelta(days=180), no_p1=True)


@pytest.mark.parametrize(
    ("days", "figures", "p1s", "status"),
    [
        (30, Figures(10, 9), 0, "on_track"),
        (30, Figures(10, 8), 0, "at_risk"),
        (30, Figures(0, 0), 0, "at_risk"),
        (200, Figures(10, 9), 0, "met"),
        (200, Figures(10, 8), 0, "missed"),
        (200, Figures(0, 0), 0, "missed"),
        (30, Figures(10, 10), 1, "missed"),
    ],
)
def test_a_projects_goal_is_judged_in_its_period(days: int, figures: Figures, p1s: int, status: str) -> None:
    verdict = judge_goal(GOAL, T0, T0 + timedelta(days=days), figures, p1s)
    assert verdict.status == status
    assert verdict.ends == T0 + timedelta(days=180)
    assert verdict.why


def test_a_goal_that_allows_p1s_ignores_them() -> None:
    goal = GOAL.model_copy(update={"no_p1": False})
    assert judge_goal(goal, T0, T0 + timedelta(days=200), Figures(10, 9), 3).status == "met"


def rated(ticket_id: str, score: int, version: int, comment: str = "", **over: Any) -> TicketEvent:
    t = report(ticket_id=ticket_id, rating=score, rated_at=RESOLVED, version=version, **over)
    return TicketEvent(
        change_id=f"{ticket_id}:{version}",
        change=Change.rated,
        actor="ann@acme.example",
        reason=rating_text(score, comment),
        at=RESOLVED,
        ticket=t,
        trace_id="t",
    )


def test_the_read_model_keeps_the_newest_answer_per_ticket_and_counts_the_index(engine: Engine) -> None:
    db.project(engine, [rated("a", 2, 3, "slow"), rated("a", 5, 4, "thanks"), rated("b", 3, 3, team="dba")])
    db.project(engine, [rated("a", 1, 3, "an older answer replayed")])
    answers = {r.ticket_id: (r.score, r.comment, r.category) for r in db.survey_answers(engine)}
    assert answers == {"a": (5, "thanks", "bug"), "b": (3, "", "bug")}
    assert db.survey_figures(engine, "project") == [("webshop", 2, 1)]
    assert db.survey_figures(engine, "team") == [("dba", 1, 0), ("ops", 1, 1)]
    assert db.survey_figures(engine, "customer", team="ops") == [("acme", 1, 1)]
    assert db.survey_figures(engine, "project", since=RESOLVED + timedelta(seconds=1)) == []


def test_p1s_of_a_project_are_counted_in_a_period(engine: Engine) -> None:
    events = [
        TicketEvent(
            change_id=f"{tid}:1",
            change=Change.opened,
            actor="router",
            at=at,
            ticket=report(TicketState.open, ticket_id=tid, priority=prio, opened_at=at, resolved_at=None),
            trace_id="t",
        )
        for tid, prio, at in [("p1", "P1", T0), ("p2", "P2", T0), ("old", "P1", T0 - timedelta(days=1))]
    ]
    db.project(engine, events)
    assert db.count_p1(engine, "webshop", T0, T0 + timedelta(days=1)) == 1
    assert db.count_p1(engine, "billing", T0, T0 + timedelta(days=1)) == 0


def test_an_answer_intake_accepted_inside_the_window_is_not_lost_to_router_lag() -> None:
    t = report()
    assert t.resolved_at is not None
    given = t.resolved_at + SURVEY_WINDOW - timedelta(minutes=1)
    late = rate(4).model_copy(update={"issued_at": given})
    rec, [out] = apply_command(TicketRecord(ticket=t, seen=[]), late, given + timedelta(minutes=2))
    assert out.change is Change.rated and rec.ticket.rated_at == given
    future = rate(4, command_id="s9").model_copy(update={"issued_at": t.resolved_at + SURVEY_WINDOW * 2})
    _, [out] = apply_command(TicketRecord(ticket=t, seen=[]), future, t.resolved_at + SURVEY_WINDOW)
    assert out.change is Change.rejected, "an answer dated later than the router's now is judged at the router's now"
