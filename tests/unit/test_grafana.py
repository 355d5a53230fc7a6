"""Grafana alerting's webhook (payload version "1"): the events it makes, its signature, its integration config and
the intake endpoint that takes it (POST and PUT)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError
from starlette.testclient import TestClient

from services.intake.config import Integration
from services.intake.formats import alertmanager, grafana
from services.intake.formats.registry import FORMATS, PARSERS, SIGNING_FORMATS
from shared.events import EventStatus, InboundEvent
from tests.fakes import FakePublisher, fake_intake

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
TOKEN = "grafana-token-0123456789"
KEY = "grafana-hmac-secret-0123456789"


def grafana_alert(status: str = "firing", **over: Any) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "status": status,
        "labels": {"alertname": "HighLatency", "grafana_folder": "prod", "service": "checkout", "severity": "critical"},
        "annotations": {"summary": "p99 latency above 2 s", "description": "checkout p99 is 2.4 s"},
        "startsAt": "2026-12-03T08:58:00Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-12-03T08:59:30Z",
        "generatorURL": "https://grafana.example/alerting/grafana/abc/view",
        "fingerprint": "57c6d9296de2ad39",
        "silenceURL": "https://grafana.example/alerting/silence/new?matcher=alertname%3DHighLatency",
        "dashboardURL": "https://grafana.example/d/checkout",
        "panelURL": "https://grafana.example/d/checkout?viewPanel=4",
        "imageURL": "",
        "values": {"A": 2.4, "B": None},
        "valueString": "[ var='A' labels={service=checkout} value=2.4 ]",
    }
    return {**alert, **over}


def grafana_payload(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    return {
        "receiver": "ticketloop",
        "status": status,
        "orgId": 1,
        "alerts": list(alerts) or [grafana_alert(status)],
        "groupLabels": {"alertname": "HighLatency"},
        "commonLabels": {"alertname": "HighLatency", "service": "checkout"},
        "commonAnnotations": {},
        "externalURL": "https://grafana.example/",
        "version": "1",
        "groupKey": '{}/{alertname="HighLatency"}:{alertname="HighLatency"}',
        "truncatedAlerts": 0,
        "title": "[FIRING:1] HighLatency (checkout)",
        "state": "alerting",
        "message": "**Firing**\n\nValue: A=2.4",
    }


def events(payload: dict[str, Any]) -> list[InboundEvent]:
    return grafana.to_events(payload, integration="grafana", received_at=NOW, trace_id="t1")


def test_a_grafana_alert_becomes_an_event_as_an_alertmanager_one_with_grafanas_links() -> None:
    [ev] = events(grafana_payload())
    assert ev.status is EventStatus.firing and ev.dedup_key == "grafana/57c6d9296de2ad39"
    assert ev.summary == "p99 latency above 2 s" and ev.labels["service"] == "checkout"
    assert ev.links == [
        "https://grafana.example/alerting/grafana/abc/view",
        "https://grafana.example/d/checkout",
        "https://grafana.example/d/checkout?viewPanel=4",
        "https://grafana.example/alerting/silence/new?matcher=alertname%3DHighLatency",
        "https://grafana.example/",
    ]
    am_shaped = {**grafana_payload(), "version": "4"}
    [same] = alertmanager.to_events(am_shaped, integration="grafana", received_at=NOW, trace_id="t1")
    assert (same.event_id, same.dedup_key) == (ev.event_id, ev.dedup_key), "one alert, one identity"
    [resolved] = events(grafana_payload(grafana_alert("resolved"), status="resolved"))
    assert resolved.status is EventStatus.resolved and resolved.dedup_key == ev.dedup_key
    assert resolved.event_id != ev.event_id and resolved.occurred_at == datetime(2026, 12, 3, 8, 59, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({**grafana_payload(), "version": "4"}, "version"),
        ({**grafana_payload(), "alerts": []}, "alerts"),
        (grafana_payload(grafana_alert(values={"A": "high"})), "alerts.0.values.A"),
    ],
)
def test_a_payload_that_is_not_grafanas_names_the_field(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        events(payload)
    assert any(".".join(str(p) for p in e["loc"]).startswith(field) for e in err.value.errors())


def sign(body: bytes, timestamp: str | None = None, key: str = KEY) -> str:
    signed = f"{timestamp}:".encode() + body if timestamp is not None else body
    return hmac.new(key.encode(), signed, hashlib.sha256).hexdigest()


def test_the_signature_is_the_hex_hmac_of_the_body_or_of_timestamp_colon_body() -> None:
    body, key = b'{"version":"1"}', KEY.encode()
    stamp = str(int(NOW.timestamp()))

    def problem(signature: str | None, timestamp: str | None = None, *, timestamped: bool = False) -> str | None:
        return grafana.signature_problem(key, body, signature, timestamp, timestamped=timestamped, now=NOW)

    assert problem(sign(body)) is None
    assert problem(sign(body).upper()) is None, "hex is hex"
    assert problem(sign(body, stamp), stamp, timestamped=True) is None
    assert problem(sign(body), stamp, timestamped=True) == "signature does not match", "the timestamp is signed"
    assert problem(sign(body, key="another-secret-0123456789")) == "signature does not match"
    assert problem(None) == "missing X-Grafana-Alerting-Signature"
    assert problem(sign(body), None, timestamped=True) == "missing or malformed signature timestamp"
    old = str(int((NOW - timedelta(minutes=6)).timestamp()))
    assert problem(sign(body, old), old, timestamped=True) == "signature timestamp is more than 5 minutes from now"
    assert problem("ünïcode") == "signature does not match", "any header is an answer, never an error"


def test_signing_is_only_for_formats_that_sign_and_needs_a_secret_set(monkeypatch: pytest.MonkeyPatch) -> None:
    base = {"name": "g", "token": TOKEN}
    with pytest.raises(ValidationError, match="is not signed"):
        Integration.model_validate({**base, "format": "alertmanager", "signing_secret": KEY})
    with pytest.raises(ValidationError, match="needs 'signing_secret'"):
        Integration.model_validate({**base, "format": "grafana", "signature_timestamp_header": "X-Ts"})
    monkeypatch.delenv("GRAFANA_HMAC", raising=False)
    with pytest.raises(ValidationError, match="environment variable GRAFANA_HMAC is unset or empty") as err:
        Integration.model_validate({**base, "format": "grafana", "signing_secret_env": "GRAFANA_HMAC"})
    assert KEY not in str(err.value)
    monkeypatch.setenv("GRAFANA_HMAC", KEY)
    found = Integration.model_validate({**base, "format": "grafana", "signing_secret_env": "GRAFANA_HMAC"})
    key = found.signing_key()
    assert key is not None and key.get_secret_value() == KEY and KEY not in repr(found)


def test_an_integration_may_name_exactly_the_registrys_formats() -> None:
    base = {"name": "x", "token": "t" * 32}
    for name in FORMATS:
        assert Integration.model_validate({**base, "format": name}).format == name
    with pytest.raises(ValidationError, match=r"unknown format 'nagios' \(one of: alertmanager, generic, grafana,"):
        Integration.model_validate({**base, "format": "nagios"})
    assert set(PARSERS) == set(FORMATS) and {"grafana"} == SIGNING_FORMATS


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, FakePublisher]]:
    signed = {
        "name": "grafana-signed",
        "format": "grafana",
        "token": TOKEN,
        "signing_secret": KEY,
        "signature_timestamp_header": "X-Grafana-Alerting-Signature-Timestamp",
    }
    with fake_intake(tmp_path, [{"name": "grafana", "format": "grafana", "token": TOKEN}, signed]) as both:
        yield both


def test_grafana_posts_and_puts_with_and_without_a_signature(client: tuple[TestClient, FakePublisher]) -> None:
    http, publisher = client
    body = orjson.dumps(grafana_payload())
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert http.post("/api/v1/integrations/grafana", content=body, headers=auth).status_code == 202
    assert http.put("/api/v1/integrations/grafana", content=body, headers=auth).status_code == 202
    stamp = str(int(datetime.now(UTC).timestamp()))
    signed = {
        **auth,
        "X-Grafana-Alerting-Signature": sign(body, stamp),
        "X-Grafana-Alerting-Signature-Timestamp": stamp,
    }
    assert http.post("/api/v1/integrations/grafana-signed", content=body, headers=signed).status_code == 202
    assert len(publisher.records) == 3
    for headers in (
        auth,
        {**signed, "X-Grafana-Alerting-Signature": sign(body)},
        {**signed, "X-Grafana-Alerting-Signature-Timestamp": "1"},
    ):
        refused = http.post("/api/v1/integrations/grafana-signed", content=body, headers=headers)
        assert refused.status_code == 401 and refused.json()["error"].startswith("invalid signature: ")
        assert KEY not in refused.text
    assert len(publisher.records) == 3, "nothing refused was published"


@pytest.mark.parametrize("stamp", ["\u00b2", "1\u00b3", "١٢٣"])
def test_a_timestamp_of_non_ascii_digits_is_a_refusal_never_an_error(stamp: str) -> None:
    problem = grafana.signature_problem(KEY.encode(), b"{}", "00", stamp, timestamped=True, now=NOW)
    assert problem == "missing or malformed signature timestamp"
