from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from services.intake.formats import alertmanager, generic
from services.intake.formats.common import severity_from_word
from services.router.rules import RoutingConfig, decide
from shared.events import EventKind, EventStatus, Severity
from shared.streaming.codec import describe_validation_error

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def am_alert(status: str = "firing", **over: Any) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "status": status,
        "labels": {"alertname": "DiskFull", "severity": "critical", "instance": "db-1"},
        "annotations": {"summary": "Disk full on db-1"},
        "startsAt": "2026-11-24T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-24T11:00:00Z",
        "generatorURL": "http://prom/graph",
        "fingerprint": "abc123",
    }
    alert.update(over)
    return alert


def am_payload(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "ticketloop",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am:9093",
        "alerts": list(alerts),
    }


def am(payload: dict[str, Any]) -> list[Any]:
    return alertmanager.to_events(payload, integration="prod-am", received_at=NOW, trace_id="t")


def test_alertmanager_alert_becomes_one_event_per_alert() -> None:
    events = am(am_payload(am_alert(), am_alert(fingerprint="def456", labels={"alertname": "X"}, annotations={})))
    assert [e.dedup_key for e in events] == ["prod-am/abc123", "prod-am/def456"]
    first = events[0]
    assert first.summary == "Disk full on db-1"
    assert first.severity is Severity.critical
    assert first.status is EventStatus.firing
    assert first.occurred_at == datetime(2026, 11, 24, 10, tzinfo=UTC)
    assert first.links == ["http://prom/graph", "http://am:9093"]
    assert events[1].summary == "X"
    assert events[1].severity is Severity.warning


def test_alertmanager_repeat_is_the_same_event_and_resolution_a_different_one() -> None:
    firing = am(am_payload(am_alert()))[0]
    repeat = am(am_payload(am_alert()))[0]
    resolved = am(am_payload(am_alert("resolved"), status="resolved"))[0]
    refired = am(am_payload(am_alert(startsAt="2026-11-24T12:00:00Z")))[0]
    assert firing.event_id == repeat.event_id
    assert resolved.event_id != firing.event_id
    assert resolved.dedup_key == firing.dedup_key
    assert resolved.occurred_at == datetime(2026, 11, 24, 11, tzinfo=UTC)
    assert refired.event_id != firing.event_id


def test_alertmanager_without_fingerprint_uses_the_labels() -> None:
    one = am(am_payload(am_alert(fingerprint="")))[0]
    two = am(
        am_payload(
            am_alert(fingerprint="", labels={"severity": "critical", "alertname": "DiskFull", "instance": "db-1"})
        )
    )[0]
    other = am(am_payload(am_alert(fingerprint="", labels={"alertname": "DiskFull", "instance": "db-2"})))[0]
    assert one.dedup_key == two.dedup_key != other.dedup_key


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({**am_payload(am_alert()), "version": "3"}, "version"),
        (am_payload(), "alerts"),
        (am_payload(am_alert(startsAt="yesterday")), "alerts.0.startsAt"),
        (am_payload(am_alert(status="burning")), "alerts.0.status"),
        (am_payload(am_alert(labels={"a": 1})), "alerts.0.labels.a"),
        (am_payload(am_alert(labels={})), "alerts.0.labels"),
        ([], ""),
    ],
)
def test_alertmanager_invalid_payload_names_the_field(payload: Any, field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        am(payload)
    fields = [p["field"] for p in describe_validation_error(exc.value)]
    assert (field or "(body)") in fields


def gen(payload: dict[str, Any], raw: bytes = b"{}") -> Any:
    return generic.to_events(payload, integration="portal", raw=raw, received_at=NOW, trace_id="t")[0]


def test_generic_feedback_groups_by_reporter_and_summary() -> None:
    a = gen({"summary": "Checkout broken", "kind": "feedback", "reporter": "x@y"})
    b = gen({"summary": " checkout BROKEN ", "kind": "feedback", "reporter": "x@y"})
    c = gen({"summary": "Checkout broken", "kind": "feedback", "reporter": "z@y"})
    assert a.kind is EventKind.feedback
    assert a.dedup_key == b.dedup_key != c.dedup_key
    assert a.labels["reporter"] == "x@y"
    assert a.occurred_at == NOW


def test_generic_event_id_comes_from_the_body_so_retries_are_one_event() -> None:
    assert gen({"summary": "s"}, raw=b"A").event_id == gen({"summary": "s"}, raw=b"A").event_id
    assert gen({"summary": "s"}, raw=b"A").event_id != gen({"summary": "s"}, raw=b"B").event_id
    assert gen({"summary": "s", "event_id": "mine"}).event_id == "mine"


def test_generic_explicit_dedup_key_is_scoped_to_the_integration() -> None:
    assert gen({"summary": "s", "dedup_key": "k"}).dedup_key == "portal/k"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "summary"),
        ({"summary": ""}, "summary"),
        ({"summary": "s", "severity": "huge"}, "severity"),
        ({"summary": "s", "status": "resolved"}, "(body)"),
        ({"summary": "s", "labels": ["a"]}, "labels"),
        ({"summary": "s", "surprise": 1}, "surprise"),
    ],
)
def test_generic_invalid_payload_names_the_field(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        gen(payload)
    assert field in [p["field"] for p in describe_validation_error(exc.value)]


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("CRITICAL", Severity.critical),
        ("page", Severity.critical),
        ("major", Severity.error),
        ("warn", Severity.warning),
        ("low", Severity.info),
        (None, Severity.warning),
        ("weird", Severity.warning),
    ],
)
def test_severity_words(word: str | None, expected: Severity) -> None:
    assert severity_from_word(word) is expected


def test_feedback_has_a_category_the_rules_see_as_a_label_and_a_beat_cannot_come_this_way() -> None:
    payload = {"summary": "export is slow", "kind": "feedback", "category": "question", "reporter": "bo@acme.example"}
    ev = gen(payload)
    assert ev.labels["category"] == "question"
    with pytest.raises(ValidationError) as err:
        gen({**payload, "category": "rant"})
    assert err.value.errors()[0]["loc"] == ("category",)
    with pytest.raises(ValidationError) as err:
        gen({"summary": "tick", "kind": "heartbeat"})
    assert err.value.errors()[0]["loc"] == ("kind",)


def test_a_feedback_category_routes_and_picks_its_sla_policy() -> None:
    """Questions go to the service desk under a looser policy than the bugs, by the label ``category``."""
    routing = RoutingConfig.model_validate(
        {
            "route": {
                "team": "operations",
                "routes": [
                    {"matchers": ['category="question"'], "team": "service-desk", "policy": "questions"},
                    {"matchers": ['category="bug"'], "team": "operations", "policy": "bugs"},
                ],
            }
        }
    )
    for category, team, policy in (("question", "service-desk", "questions"), ("bug", "operations", "bugs")):
        ev = gen({"summary": "export is slow", "kind": "feedback", "category": category})
        decided = decide(ev.labels, ev.severity, routing)
        assert (decided.team, decided.policy) == (team, policy), category
