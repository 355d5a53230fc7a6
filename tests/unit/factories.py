"""Builders for test data."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.events import Change, EventKind, EventStatus, InboundEvent, Severity, Ticket, TicketEvent, TicketState

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def event(**over: Any) -> InboundEvent:
    data: dict[str, Any] = {
        "event_id": "e1",
        "kind": EventKind.alert,
        "source": "am",
        "dedup_key": "am/fp1",
        "status": EventStatus.firing,
        "summary": "disk full",
        "severity": Severity.critical,
        "labels": {"service": "db"},
        "occurred_at": T0,
        "received_at": T0,
        "trace_id": "t1",
    }
    data.update(over)
    return InboundEvent(**data)


def ticket(**over: Any) -> Ticket:
    data: dict[str, Any] = {
        "ticket_id": "tl-1",
        "dedup_key": "am/fp1",
        "kind": EventKind.alert,
        "source": "am",
        "state": TicketState.open,
        "summary": "disk full",
        "severity": Severity.critical,
        "priority": "P1",
        "team": "ops",
        "policy": "default",
        "rule": "r",
        "occurrences": 1,
        "first_seen": T0,
        "last_seen": T0,
        "opened_at": T0,
        "version": 1,
    }
    data.update(over)
    return Ticket(**data)


def ticket_event(change: Change, version: int, *, at: datetime = T0, **over: Any) -> TicketEvent:
    """The ticket event of ``change`` with the ticket at ``version`` (``over``: ticket fields)."""
    t = ticket(version=version, **over)
    return TicketEvent(change_id=f"{t.ticket_id}:{version}", change=change, actor="x", at=at, ticket=t, trace_id="t")
