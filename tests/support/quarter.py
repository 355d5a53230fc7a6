"""A scripted quarter (2026Q3) for the review's tests, written to the read model as the router and the sla worker
write it (``db.project``), and the figures the review must find in it for customer acme.

acme's tickets opened in the quarter:
- A: alert P1 "Disk 91% full on db-1", 5 occurrences, acknowledged after 10 min, resolved after 60 min;
- B: alert P1 "Disk 95% full on db-2", acknowledged after 30 min (its acknowledge clock breached), resolved after 2 h;
- C: feedback P3 bug "Checkout fails on mobile" in hypercare, answered by known issue WEB-12 (its reporter says the
  workaround solved it), rated 5 "fast";
- D: feedback P3 bug "Invoice PDF empty", its first response breached, rated 2 "slow";
- E: feedback P3 question "Invoice pdf EMPTY", still open, handed over to operations at the end of hypercare.
Outside it: F (acme, opened the day before the quarter) and G (globex).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from shared.events import Change, Escalation, EventKind, Severity, Ticket, TicketEvent, TicketState
from shared.rules.satisfaction import rating_text
from shared.rules.workarounds import said_text
from shared.store import db

QUARTER = "2026Q3"
SLA_YAML = """
version: 1
policies:
  default:
    acknowledge: {P1: 15m, P2: 30m, P3: 1h}
    resolve: {P1: 4h}
    first_response: {P3: 2h}
    escalation: [{after: 0s, team: owner}]
"""


def _ticket(tid: str, opened: datetime, **over: Any) -> Ticket:
    fields: dict[str, Any] = {
        "ticket_id": tid,
        "dedup_key": f"k/{tid}",
        "kind": EventKind.alert,
        "source": "am",
        "state": TicketState.open,
        "summary": tid,
        "severity": Severity.critical,
        "priority": "P1",
        "team": "operations",
        "policy": "default",
        "rule": "r",
        "occurrences": 1,
        "first_seen": opened,
        "last_seen": opened,
        "opened_at": opened,
        "project": "webshop",
        "customer": "acme",
        "phase": "operations",
        "version": 1,
    }
    fields.update(over)
    return Ticket(**fields)


def _life(t: Ticket, ack_after: timedelta | None, resolve_after: timedelta | None) -> list[TicketEvent]:
    """The ticket's opening, acknowledgement and resolution as ticket events."""
    out = [
        TicketEvent(
            change_id=f"{t.ticket_id}:1", change=Change.opened, actor="router", at=t.opened_at, ticket=t, trace_id="q"
        )
    ]
    if ack_after is not None:
        t = t.model_copy(
            update={"state": TicketState.acknowledged, "acknowledged_at": t.opened_at + ack_after, "version": 2}
        )
        out.append(
            TicketEvent(
                change_id=f"{t.ticket_id}:2",
                change=Change.acknowledged,
                actor="ian",
                at=t.opened_at + ack_after,
                ticket=t,
                trace_id="q",
            )
        )
    if resolve_after is not None:
        at = t.opened_at + resolve_after
        t = t.model_copy(update={"state": TicketState.resolved, "resolved_at": at, "version": 3})
        out.append(
            TicketEvent(
                change_id=f"{t.ticket_id}:3", change=Change.resolved, actor="ian", at=at, ticket=t, trace_id="q"
            )
        )
    return out


def _rated(ev: TicketEvent, score: int, comment: str) -> TicketEvent:
    t = ev.ticket
    at = (t.resolved_at or t.opened_at) + timedelta(hours=1)
    t = t.model_copy(update={"rating": score, "rated_at": at, "version": t.version + 1})
    return TicketEvent(
        change_id=f"{t.ticket_id}:{t.version}",
        change=Change.rated,
        actor="ann@acme.example",
        reason=rating_text(score, comment),
        at=at,
        ticket=t,
        trace_id="q",
    )


def _breach(t: Ticket, clock: str, at: datetime, reason: str) -> Escalation:
    return Escalation.model_validate(
        {
            "escalation_id": f"{t.ticket_id}:{clock}:1:breach",
            "ticket_id": t.ticket_id,
            "kind": "breach",
            "clock": clock,
            "level": 1,
            "target_team": t.team,
            "deadline": at,
            "fired_at": at,
            "reason": reason,
            "ticket": t,
            "trace_id": "q",
        }
    )


def write_quarter(engine: Engine) -> list[TicketEvent]:
    """Writes the quarter; returns its ticket events (what the tickets topic would hold)."""
    day = datetime(2026, 7, 6, 10, 0, tzinfo=UTC)
    feedback: dict[str, Any] = {"kind": EventKind.feedback, "priority": "P3", "severity": Severity.warning}
    a = _ticket("tl-a", day, summary="Disk 91% full on db-1", occurrences=5)
    b = _ticket("tl-b", day + timedelta(days=14), summary="Disk 95% full on db-2")
    c = _ticket(
        "tl-c",
        datetime(2026, 8, 3, 9, 0, tzinfo=UTC),
        summary="Checkout fails on mobile",
        labels={"category": "bug", "reporter": "ann@acme.example"},
        known_issue="WEB-12",
        phase="hypercare",
        team="implementation",
        **feedback,
    )
    d = _ticket(
        "tl-d",
        datetime(2026, 8, 10, 9, 0, tzinfo=UTC),
        summary="Invoice PDF empty",
        labels={"category": "bug", "reporter": "ann@acme.example"},
        **feedback,
    )
    e = _ticket(
        "tl-e",
        datetime(2026, 9, 1, 9, 0, tzinfo=UTC),
        summary="Invoice pdf EMPTY",
        labels={"category": "question"},
        phase="hypercare",
        team="implementation",
        **feedback,
    )
    f = _ticket("tl-f", datetime(2026, 6, 30, 9, 0, tzinfo=UTC), summary="Disk 99% full on db-3")
    g = _ticket("tl-g", day, summary="Globex login down", customer="globex", project="billing")
    events = (
        _life(a, timedelta(minutes=10), timedelta(minutes=60))
        + _life(b, timedelta(minutes=30), timedelta(hours=2))
        + _life(c, timedelta(minutes=5), timedelta(days=1))
        + _life(d, None, timedelta(hours=3))
        + _life(e, None, None)
        + _life(f, timedelta(minutes=1), None)
        + _life(g, timedelta(minutes=1), None)
    )
    resolved = {ev.ticket.ticket_id: ev for ev in events if ev.change is Change.resolved}
    events += [_rated(resolved["tl-c"], 5, "fast"), _rated(resolved["tl-d"], 2, "slow")]
    said = resolved["tl-c"].ticket.model_copy(update={"version": 9})
    events.append(
        TicketEvent(
            change_id="tl-c:9",
            change=Change.workaround_answered,
            actor="ann@acme.example",
            reason=said_text("WEB-12", solved=True),
            at=datetime(2026, 8, 3, 12, 0, tzinfo=UTC),
            ticket=said,
            trace_id="q",
        )
    )
    moved = e.model_copy(update={"team": "operations", "phase": "operations", "version": 2})
    events.append(
        TicketEvent(
            change_id="tl-e:2",
            change=Change.reassigned,
            actor="router-timer",
            reason="handover: hypercare of project webshop ended 2026-09-10; from implementation to operations",
            at=datetime(2026, 9, 10, 1, 0, tzinfo=UTC),
            ticket=moved,
            trace_id="q",
        )
    )
    breaches = [
        _breach(b, "acknowledge", b.opened_at + timedelta(minutes=15), "acknowledge target missed: not acknowledged"),
        _breach(d, "first_response", d.opened_at + timedelta(hours=2), "first response target missed"),
    ]
    db.project(engine, events, breaches)
    return events


EXPECTED_TEXT = {
    "summary": ["5", "tickets opened", "SLA breaches", "1/3", "50.0% of 2"],
    "compliance": [
        "acknowledge",
        "50.0% (1/2)",
        "100.0% (3/3)",
        "resolve",
        "100.0% (2/2)",
        "first response",
        "66.7% (2/3)",
    ],
    "trend": ["2026-07-01", "10 min", "30 min", "60 min", "2.0 h"],
    "volume": ["alert", "bug", "question", "operations", "hypercare"],
    "recurring": ["Disk 91% full on db-1", "Invoice PDF empty"],
    "breaches": ["tl-b", "tl-d", "first response target missed"],
    "moves": ["tl-e", "handover: hypercare of project webshop ended"],
    "known-issues": ["1 of 3 customer reports", "WEB-12 1 1 0"],
    "satisfaction": ["Index 50.0% (1 of 2 answers", "fast", "slow", "5/5", "2/5"],
    "sop": ["Invoice PDF empty"],
}
"""What each section of acme's 2026Q3 review must show."""
