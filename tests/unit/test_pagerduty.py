from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from services.intake.formats import pagerduty
from services.router.grouping import assign
from services.router.lifecycle import Member, TicketRecord, apply_event
from services.router.rules import RouteDecision
from shared.events import Change, EventStatus, Severity, TicketState
from shared.streaming.codec import describe_validation_error
from tests.unit.factories import event, ticket

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
KEY = "R" * 32


def pd(action: str = "trigger", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"routing_key": KEY, "event_action": action, "dedup_key": "disk-db-1"}
    if action == "trigger":
        body["payload"] = {
            "summary": "Disk full on db-1",
            "source": "db-1",
            "severity": "critical",
            "component": "postgres",
            "custom_details": {"free": "1%"},
        }
    body.update(over)
    return body


def events(body: dict[str, Any], raw: bytes = b"{}") -> list[Any]:
    return pagerduty.to_events(body, integration="pd", raw=raw, received_at=NOW, trace_id="t")


def test_trigger_acknowledge_resolve_share_the_dedup_key() -> None:
    [trigger] = events(pd())
    [ack] = events(pd("acknowledge"), raw=b"a")
    [resolve] = events(pd("resolve"), raw=b"r")
    assert trigger.dedup_key == ack.dedup_key == resolve.dedup_key == "pd/disk-db-1"
    assert (trigger.status, ack.status, resolve.status) == (
        EventStatus.firing,
        EventStatus.acknowledged,
        EventStatus.resolved,
    )
    assert (trigger.severity, trigger.summary) == (Severity.critical, "Disk full on db-1")
    assert trigger.labels == {"source": "db-1", "component": "postgres"}
    assert trigger.annotations == {"free": "1%"}


def test_a_trigger_without_dedup_key_gets_one_from_its_body() -> None:
    body = pd(dedup_key=None)
    first, again = events(body, raw=b"same")[0], events(body, raw=b"same")[0]
    assert first.dedup_key == again.dedup_key and first.event_id == again.event_id
    assert events(body, raw=b"other")[0].dedup_key != first.dedup_key


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (pd("acknowledge", dedup_key=None), "(body)"),
        (pd(payload=None), "(body)"),
        (pd(routing_key="short"), "routing_key"),
        (pd(event_action="explode"), "event_action"),
        (pd(payload={"summary": "x", "source": "y", "severity": "sev1"}), "payload.severity"),
    ],
)
def test_invalid_events_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        events(body)
    assert field in [p["field"] for p in describe_validation_error(exc.value)]


def test_a_source_acknowledgement_acknowledges_an_open_ticket_and_never_opens_one() -> None:
    ack = event(status=EventStatus.acknowledged, event_id="ack-1")
    assert assign(None, ack, timedelta(minutes=30)).ticket_id is None
    decision = RouteDecision(team="ops", priority="P1", policy="default", rule="r")
    member = Member("firing", "e1")
    rec, out, after = apply_event(TicketRecord(ticket=ticket()), "tl-1", "am/fp1", ack, member, decision, NOW)
    assert rec is not None and rec.ticket.state is TicketState.acknowledged and rec.ticket.acknowledged_at == NOW
    assert out[0].change is Change.acknowledged and out[0].reason == "acknowledged at the source"
    assert after == member
    done, none, _ = apply_event(
        TicketRecord(ticket=ticket(state=TicketState.resolved)), "tl-1", "am/fp1", ack, member, decision, NOW
    )
    assert none == [] and done is not None and done.ticket.state is TicketState.resolved
