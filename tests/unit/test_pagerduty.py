from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from starlette.testclient import TestClient

from services.intake.api import create_app
from services.intake.config import IntakeConfig
from services.intake.edge import IntakeDeps
from services.intake.formats import pagerduty
from services.router.grouping import assign
from services.router.lifecycle import Member, TicketRecord, apply_event
from services.router.rules import RouteDecision
from shared.events import Action, Change, Command, EventStatus, Severity, TicketEvent, TicketState
from shared.store import db
from shared.streaming.codec import describe_validation_error
from shared.streaming.topics import Topics
from tests.fakes import FakePublisher
from tests.unit.factories import T0, event, ticket

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


def test_a_change_event_is_a_comment_on_each_open_ticket_of_its_integration(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 't.db'}")
    db.init_db(engine)
    opened = [
        TicketEvent(
            change_id=f"{tid}:1",
            change=Change.opened,
            actor="pd",
            at=T0,
            trace_id="t",
            ticket=ticket(ticket_id=tid, source=source, state=state),
        )
        for tid, source, state in [
            ("tl-1", "pd", TicketState.open),
            ("tl-2", "pd", TicketState.resolved),
            ("tl-3", "am", TicketState.open),
        ]
    ]
    db.project(engine, opened)
    key = "0123456789abcdef0123456789abcdef"
    config = IntakeConfig.model_validate({"integrations": [{"name": "pd", "format": "pagerduty", "token": key}]})
    publisher = FakePublisher()
    app = create_app(IntakeDeps(config, publisher, engine, Topics("t.", 2), CollectorRegistry()))
    change = {
        "routing_key": key,
        "payload": {"summary": "deployed v2.3", "source": "ci"},
        "links": [{"href": "https://ci/42"}],
    }
    with TestClient(app) as http:
        resp = http.post("/v2/change/enqueue", content=orjson.dumps(change))
        bad = http.post("/v2/change/enqueue", content=orjson.dumps({**change, "payload": {}}))
        stranger = http.post("/v2/change/enqueue", content=orjson.dumps({**change, "routing_key": "x" * 32}))
    assert resp.status_code == 202 and resp.json() == {"status": "success", "message": "Change event processed"}
    [cmd] = [Command.model_validate_json(r.value) for r in publisher.records]
    assert (cmd.ticket_id, cmd.action, cmd.actor) == ("tl-1", Action.comment, "pd")
    assert cmd.reason == "change: deployed v2.3 (from ci) https://ci/42"
    assert bad.status_code == 400 and bad.json()["status"] == "invalid event"
    assert stranger.status_code == 401
