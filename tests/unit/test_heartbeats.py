"""Heartbeats (dead man's switches): the pure steps, the router's timer opening and resolving the ticket (on the
in-memory broker), and intake's doors (the heartbeat endpoint and Alertmanager's Watchdog)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from services.intake.api import create_app
from services.intake.config import IntakeConfig
from services.intake.edge import IntakeDeps
from services.router.heartbeats import BadBeatError, Heartbeat, on_beat, on_tick
from shared.events import EventKind, EventStatus, InboundEvent, beat_event
from shared.store import db
from shared.streaming.topics import Topics
from tests.fakes import FakePublisher, fake_intake
from tests.unit.factories import T0

EVERY, GRACE = timedelta(seconds=60), timedelta(seconds=30)


def beat(at_s: float, n: int = 0) -> InboundEvent:
    return beat_event("nightly", "cron", EVERY, GRACE, T0 + timedelta(seconds=at_s), f"b{n}", f"t{n}")


def test_a_heartbeat_goes_missing_once_after_every_plus_grace_and_the_next_beat_brings_it_back() -> None:
    state, none = on_beat(None, beat(0), T0)
    assert none is None and state.due == T0 + timedelta(seconds=90), "the router's clock, not the beat's"
    assert on_tick(state, T0 + timedelta(seconds=89), "t")[1] is None
    missing, opened = on_tick(state, T0 + timedelta(seconds=91), "t")
    assert opened is not None and opened.status is EventStatus.firing and opened.kind is EventKind.alert
    assert opened.dedup_key == "heartbeat/nightly" and opened.labels["alertname"] == "HeartbeatMissing"
    assert missing.missing_since == T0 + timedelta(seconds=90)
    assert on_tick(missing, T0 + timedelta(seconds=500), "t")[1] is None, "one ticket per absence"
    back, resolved = on_beat(missing, beat(600, 1), T0 + timedelta(seconds=600))
    assert resolved is not None and resolved.status is EventStatus.resolved and back.missing_since is None
    assert resolved.dedup_key == opened.dedup_key
    assert Heartbeat.decode(missing.encode()) == missing


@pytest.mark.parametrize(
    "change",
    [
        {"annotations": {"heartbeat_every_s": "1e12", "heartbeat_grace_s": "60"}},
        {"annotations": {"heartbeat_every_s": "nan"}},
        {"annotations": {"heartbeat_every_s": "0.1"}},
        {"annotations": {}},
        {"dedup_key": "portal/heartbeat/nightly"},
        {"labels": {}},
    ],
)
def test_a_beat_intake_could_not_have_made_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(BadBeatError):
        on_beat(None, beat(0).model_copy(update=change), T0)


TOKEN = "cron-token-0123456789abcdef"
AM = "am-token-0123456789abcdef"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, FakePublisher]]:
    integrations = [
        {"name": "cron", "format": "generic", "token": TOKEN, "heartbeat": {"name": "nightly", "every": "1m"}},
        {"name": "am", "format": "alertmanager", "token": AM, "heartbeat": {"every": "1m", "grace": "2m"}},
    ]
    with fake_intake(tmp_path, integrations) as both:
        yield both


def test_a_beat_over_http_needs_its_integrations_token_and_says_when_it_would_be_missing(
    client: tuple[TestClient, FakePublisher],
) -> None:
    http, publisher = client
    ok = http.post("/api/v1/heartbeats/nightly", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 202 and ok.json()["heartbeat"] == "nightly" and ok.json()["missing_after"]
    assert http.post("/api/v1/heartbeats/nightly", headers={"Authorization": f"Bearer {AM}"}).status_code == 401
    assert http.post("/api/v1/heartbeats/unknown", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
    [record] = publisher.records
    ev = InboundEvent.model_validate_json(record.value)
    assert (record.key, ev.kind, ev.annotations["heartbeat_every_s"]) == (
        "heartbeat/nightly",
        EventKind.heartbeat,
        "60",
    )


def test_alertmanagers_watchdog_is_a_beat_and_the_other_alerts_stay_alerts(
    client: tuple[TestClient, FakePublisher],
) -> None:
    http, publisher = client

    def alert(name: str) -> dict[str, object]:
        return {"status": "firing", "labels": {"alertname": name}, "startsAt": "2026-12-03T08:00:00Z"}

    body = {"version": "4", "status": "firing", "alerts": [alert("Watchdog"), alert("DiskFull")]}
    for _ in range(2):
        resp = http.post(
            "/api/v1/integrations/am", content=orjson.dumps(body), headers={"Authorization": f"Bearer {AM}"}
        )
        assert resp.status_code == 202
    events = [InboundEvent.model_validate_json(r.value) for r in publisher.records]
    beats = [e for e in events if e.kind is EventKind.heartbeat]
    assert [e.dedup_key for e in beats] == ["heartbeat/am", "heartbeat/am"]
    assert beats[0].annotations["heartbeat_grace_s"] == "120"
    assert beats[0].event_id != beats[1].event_id, "each webhook's Watchdog is a beat of its own"
    assert [e.labels["alertname"] for e in events if e.kind is EventKind.alert] == ["DiskFull", "DiskFull"]


def test_heartbeat_names_are_unique() -> None:
    with pytest.raises(ValueError, match="heartbeat names must be unique"):
        IntakeConfig.model_validate(
            {
                "integrations": [
                    {"name": "a", "format": "generic", "token": TOKEN, "heartbeat": {"name": "x", "every": "1m"}},
                    {"name": "x", "format": "generic", "token": AM, "heartbeat": {"every": "1m"}},
                ]
            }
        )


def test_a_signing_integrations_beats_need_its_signature_and_a_grace_of_zero_is_zero(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 't.db'}")
    db.init_db(engine)
    key = "grafana-hmac-key-0123456789ab"
    graf = {
        "name": "graf",
        "format": "grafana",
        "token": TOKEN,
        "signing_secret": key,
        "heartbeat": {"every": "1m", "grace": "0s"},
    }
    config = IntakeConfig.model_validate({"integrations": [graf]})
    publisher = FakePublisher()
    app = create_app(IntakeDeps(config, publisher, engine, Topics("t.", 2), CollectorRegistry()))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(app) as http:
        unsigned = http.post("/api/v1/heartbeats/graf", headers=auth)
        signature = hmac.new(key.encode(), b"", hashlib.sha256).hexdigest()
        signed = http.post("/api/v1/heartbeats/graf", headers={**auth, "X-Grafana-Alerting-Signature": signature})
    assert unsigned.status_code == 401 and "invalid signature" in unsigned.json()["error"]
    assert signed.status_code == 202
    [record] = publisher.records
    assert InboundEvent.model_validate_json(record.value).annotations["heartbeat_grace_s"] == "0"
