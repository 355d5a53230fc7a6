"""The HTTP layer with a fake publisher (a unit test); tests/integration runs it against the real broker."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import structlog
import structlog.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.requests import Request
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from services.intake import edge
from services.intake.api import create_app
from services.intake.config import IntakeConfig
from services.intake.edge import IntakeDeps, RequestIds, loggable_path
from shared.events import Change, InboundEvent, TicketEvent, TicketState
from shared.infra.logging import configure_logging
from shared.store import db
from shared.streaming.topics import Topics
from tests.fakes import FakePublisher, fake_intake
from tests.unit.factories import T0, ticket

AM = "am-token-0123456789abcdef"
GEN = "gen-token-0123456789abcdef"
API = "api-token-0123456789abcdef"
VIEWER = "viewer-token-0123456789abcdef"
CONFIG = IntakeConfig.model_validate(
    {
        "integrations": [
            {"name": "am", "format": "alertmanager", "token": AM},
            # given by its hash: every test posting with GEN goes through it (the file would hold no token)
            {"name": "portal", "format": "generic", "token_sha256": hashlib.sha256(GEN.encode()).hexdigest()},
        ],
        "api_clients": [
            {"name": "console", "token": API, "acts_for": ["alice"]},
            {"name": "dashboard", "token_sha256": hashlib.sha256(VIEWER.encode()).hexdigest(), "role": "viewer"},
        ],
    }
)


class Api:
    def __init__(self, client: TestClient, publisher: FakePublisher, engine: Any) -> None:
        self.client, self.publisher, self.engine = client, publisher, engine

    def post(self, path: str, token: str | None, body: bytes | dict[str, Any], **headers: str) -> Any:
        if token:
            headers["Authorization"] = f"Bearer {token}"
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        return self.client.post(path, content=content, headers=headers)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 't.db'}")
    db.init_db(engine)
    publisher = FakePublisher()
    app = create_app(IntakeDeps(CONFIG, publisher, engine, Topics("t.", 2), CollectorRegistry(), max_body_bytes=2048))
    with TestClient(app) as client:
        yield Api(client, publisher, engine)


def test_credentials_given_by_their_hash_take_their_token_and_refuse_others(api: Api) -> None:
    event = {"summary": "disk full", "dedup_key": "disk-1"}
    assert api.post("/api/v1/integrations/portal", GEN, event).status_code == 202
    assert api.post("/api/v1/integrations/portal", AM, event).status_code == 401
    hashed = "Bearer " + hashlib.sha256(GEN.encode()).hexdigest()  # the hash itself is no token
    assert (
        api.client.post("/api/v1/integrations/portal", json=event, headers={"Authorization": hashed}).status_code == 401
    )
    assert api.client.get("/api/v1/tickets", headers={"Authorization": f"Bearer {VIEWER}"}).status_code == 200


def test_generic_event_is_published_keyed_by_dedup_key(api: Api) -> None:
    resp = api.post(
        "/api/v1/integrations/portal", GEN, {"summary": "broken", "dedup_key": "k1"}, **{"X-Trace-Id": "tr1"}
    )
    assert resp.status_code == 202, resp.text
    assert resp.json()["events"][0]["dedup_key"] == "portal/k1"
    [record] = api.publisher.records
    assert (record.topic, record.key) == ("t.events", "portal/k1")
    assert InboundEvent.model_validate_json(record.value).summary == "broken"
    assert ("trace_id", b"tr1") in record.headers


@pytest.mark.parametrize(
    ("token", "path"),
    [
        (None, "/api/v1/integrations/portal"),
        ("wrong-token-0123456789", "/api/v1/integrations/portal"),
        (AM, "/api/v1/integrations/portal"),
        (GEN, "/api/v1/integrations/nope"),
    ],
)
def test_bad_or_missing_token_is_401_and_nothing_is_published(api: Api, token: str | None, path: str) -> None:
    resp = api.post(path, token, {"summary": "x"})
    assert resp.status_code == 401
    assert "token" in resp.json()["error"]
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert api.publisher.records == []


def test_malformed_json_is_400_with_the_position(api: Api) -> None:
    resp = api.post("/api/v1/integrations/portal", GEN, b'{"summary": "x",')
    assert resp.status_code == 400
    assert "malformed JSON" in resp.json()["error"]
    assert "line 1" in resp.json()["error"]
    assert api.post("/api/v1/integrations/portal", GEN, b"").status_code == 400


def test_wrong_types_are_422_naming_each_field(api: Api) -> None:
    resp = api.post(
        "/api/v1/integrations/am",
        AM,
        {"version": "4", "status": "firing", "alerts": [{"status": 5, "labels": {"a": "b"}}]},
    )
    assert resp.status_code == 422
    fields = {p["field"] for p in resp.json()["problems"]}
    assert {"alerts.0.status", "alerts.0.startsAt"} <= fields
    assert api.publisher.records == []


def test_oversize_body_is_413(api: Api) -> None:
    resp = api.post("/api/v1/integrations/portal", GEN, {"summary": "x" * 5000})
    assert resp.status_code == 413
    assert "limit of 2048 bytes" in resp.json()["error"]
    assert api.publisher.records == []


def test_broker_down_is_503_with_retry_after_and_ready_says_so(api: Api) -> None:
    api.publisher.down = True
    resp = api.post("/api/v1/integrations/portal", GEN, {"summary": "x"})
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "5"
    assert api.client.get("/readyz").status_code == 503
    assert api.client.get("/healthz").status_code == 200


def test_metrics_count_accepted_and_rejected(api: Api) -> None:
    api.post("/api/v1/integrations/portal", GEN, {"summary": "x"})
    api.post("/api/v1/integrations/portal", None, {"summary": "x"})
    text = api.client.get("/metrics").text
    assert 'ticketloop_intake_events_accepted_total{integration="portal"} 1.0' in text
    assert 'ticketloop_intake_requests_rejected_total{reason="unauthorized"} 1.0' in text


def seed(api: Api) -> None:
    t = ticket()
    db.project(
        api.engine, [TicketEvent(change_id="tl-1:1", change=Change.opened, actor="am", at=T0, ticket=t, trace_id="t")]
    )


def test_metrics_count_unresolved_tickets_by_state_team_and_project(api: Api) -> None:
    opened = [ticket(ticket_id=f"tl-{n}", team="db" if n == 3 else "ops") for n in (1, 2, 3)]
    opened.append(ticket(ticket_id="tl-6", team="ops", project="webshop", customer="acme"))
    acked = ticket(ticket_id="tl-4", state=TicketState.acknowledged, version=2)
    resolved = ticket(ticket_id="tl-5", state=TicketState.resolved, version=2)
    db.project(
        api.engine,
        [
            TicketEvent(
                change_id=f"{t.ticket_id}:{t.version}", change=Change.opened, actor="am", at=T0, ticket=t, trace_id="t"
            )
            for t in (*opened, acked, resolved)
        ],
    )
    text = api.client.get("/metrics").text
    unresolved = {
        (s.labels["state"], s.labels["team"], s.labels["project"], s.labels["customer"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "ticketloop_tickets_unresolved_count"
    }
    assert unresolved == {
        ("open", "ops", "", ""): 2,
        ("open", "db", "", ""): 1,
        ("acknowledged", "ops", "", ""): 1,
        ("open", "ops", "webshop", "acme"): 1,  # a project's ticket: its project and customer
    }


def test_ticket_api_reads_the_read_model(api: Api) -> None:
    seed(api)
    auth = {"Authorization": f"Bearer {API}"}
    assert api.client.get("/api/v1/tickets").status_code == 401
    listed = api.client.get("/api/v1/tickets", headers=auth).json()["tickets"]
    assert [t["ticket_id"] for t in listed] == ["tl-1"]
    assert listed[0]["opened_at"] == T0.isoformat()
    assert api.client.get("/api/v1/tickets?state=resolved", headers=auth).json()["tickets"] == []
    one = api.client.get("/api/v1/tickets/tl-1", headers=auth).json()
    assert one["timeline"][0]["change"] == "opened"
    assert api.client.get("/api/v1/tickets/nope", headers=auth).status_code == 404
    assert api.client.get("/api/v1/tickets?limit=x", headers=auth).status_code == 422
    for offset in ("9223372036854775808", "1" * 5000):  # past SQLite's integers (a 500 before), past int()'s digits
        resp = api.client.get(f"/api/v1/tickets?offset={offset}", headers=auth)
        assert resp.status_code == 422, resp.text
    assert api.client.get("/api/v1/tickets?offset=1000000000", headers=auth).json()["tickets"] == []


def test_ack_produces_a_command_keyed_by_ticket(api: Api) -> None:
    seed(api)
    resp = api.post("/api/v1/tickets/tl-1/ack", API, {"actor": "alice", "reason": "on it"})
    assert resp.status_code == 202
    [record] = api.publisher.records
    assert (record.topic, record.key) == ("t.commands", "tl-1")
    body = orjson.loads(record.value)
    assert (body["action"], body["actor"], body["reason"]) == ("acknowledge", "alice", "on it")
    resolve = api.post("/api/v1/tickets/tl-1/resolve", API, b"")
    assert resolve.status_code == 202
    assert orjson.loads(api.publisher.records[1].value)["actor"] == "console"


def test_commands_for_unknown_tickets_or_with_bad_bodies_are_refused(api: Api) -> None:
    seed(api)
    assert api.post("/api/v1/tickets/nope/ack", API, {}).status_code == 404
    bad = api.post("/api/v1/tickets/tl-1/ack", API, {"actor": 5})
    assert bad.status_code == 422 and bad.json()["problems"][0]["field"] == "actor"
    assert api.post("/api/v1/tickets/tl-1/ack", GEN, {}).status_code == 401
    assert api.publisher.records == []


@pytest.mark.parametrize(
    ("verb", "body", "action"),
    [
        ("unack", {}, "unacknowledge"),
        ("close", {}, "close"),
        ("reopen", {}, "reopen"),
        ("reassign", {"team": "dba", "person": "erik"}, "reassign"),
        ("comment", {"reason": "customer called"}, "comment"),
        ("snooze", {"until": "2030-01-01T00:00:00Z"}, "snooze"),
        ("priority", {"priority": "P2"}, "set_priority"),
        ("wait", {}, "wait_on_customer"),
        ("customer-replied", {}, "customer_replied"),
    ],
)
def test_every_lifecycle_action_has_an_endpoint(api: Api, verb: str, body: dict[str, Any], action: str) -> None:
    seed(api)
    resp = api.post(f"/api/v1/tickets/tl-1/{verb}", API, body)
    assert resp.status_code == 202, resp.text
    sent = orjson.loads(api.publisher.records[-1].value)
    assert sent["action"] == action
    for key, value in body.items():
        assert sent[key] in (value, value.replace("Z", "+00:00") if isinstance(value, str) else value)


@pytest.mark.parametrize(
    ("verb", "body", "field"),
    [
        ("reassign", {}, "(body)"),
        ("priority", {"priority": "urgent"}, "priority"),
        ("snooze", {"until": "later"}, "until"),
        ("comment", {}, "(body)"),
    ],
)
def test_lifecycle_actions_validate_their_arguments(api: Api, verb: str, body: dict[str, Any], field: str) -> None:
    seed(api)
    resp = api.post(f"/api/v1/tickets/tl-1/{verb}", API, body)
    assert resp.status_code == 422
    assert field in [p["field"] for p in resp.json()["problems"]]
    assert api.post("/api/v1/tickets/tl-1/explode", API, {}).status_code == 404
    assert api.publisher.records == []


def test_a_pagerduty_key_of_255_characters_is_taken_and_answered_as_sent(tmp_path: Path) -> None:
    longest = "k" * 255  # PagerDuty's longest; with the integration's prefix over an event's 255 (a 400 before)
    body = {
        "routing_key": "K" * 32,
        "dedup_key": longest,
        "payload": {"summary": "s", "source": "x", "severity": "error"},
    }
    with fake_intake(tmp_path, [{"name": "pd", "format": "pagerduty", "token": "K" * 32}]) as (client, publisher):
        for action in ("trigger", "acknowledge"):
            sent = client.post("/v2/enqueue", json={**body, "event_action": action})
            assert sent.status_code == 202, sent.text
            assert sent.json()["dedup_key"] == longest
    trigger, ack = (r.key for r in publisher.records)
    assert trigger == ack and len(trigger) <= 255 and trigger.startswith("pd/" + "k" * 160 + "~")


def test_pagerduty_enqueue_answers_like_pagerduty(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'pd.db'}")
    db.init_db(engine)
    config = IntakeConfig.model_validate({"integrations": [{"name": "pd", "format": "pagerduty", "token": "K" * 32}]})
    publisher = FakePublisher()
    app = create_app(IntakeDeps(config, publisher, engine, Topics("t.", 2), CollectorRegistry()))
    body = {
        "routing_key": "K" * 32,
        "event_action": "trigger",
        "dedup_key": "d1",
        "payload": {"summary": "s", "source": "x", "severity": "error"},
    }
    with TestClient(app) as client:
        ok = client.post("/v2/enqueue", json=body)
        assert ok.status_code == 202
        assert ok.json() == {"status": "success", "message": "Event processed", "dedup_key": "d1"}
        assert [r.key for r in publisher.records] == ["pd/d1"]
        bad = client.post("/v2/enqueue", json={**body, "event_action": "acknowledge", "dedup_key": None})
        assert bad.status_code == 400
        assert bad.json()["status"] == "invalid event" and bad.json()["errors"]
        assert client.post("/v2/enqueue", json={**body, "routing_key": "X" * 32}).status_code == 401
        assert client.post("/v2/enqueue", content=b"{").status_code == 400
    assert len(publisher.records) == 1


def test_silences_are_created_listed_and_expired(api: Api) -> None:
    auth = {"Authorization": f"Bearer {API}"}
    made = api.post("/api/v1/silences", API, {"matchers": ['service="db"'], "duration": "2h", "comment": "drill"})
    assert made.status_code == 201, made.text
    silence = made.json()
    assert (silence["state"], silence["created_by"], silence["matchers"]) == ("active", "console", ['service="db"'])
    sid = silence["silence_id"]
    assert api.client.get(f"/api/v1/silences/{sid}", headers=auth).json()["comment"] == "drill"
    assert [
        s["silence_id"] for s in api.client.get("/api/v1/silences?state=active", headers=auth).json()["silences"]
    ] == [sid]
    expired = api.client.delete(f"/api/v1/silences/{sid}", headers=auth)
    assert expired.status_code == 200 and expired.json()["state"] == "expired"
    assert api.client.get("/api/v1/silences?state=active", headers=auth).json()["silences"] == []
    assert [s["state"] for s in api.client.get("/api/v1/silences", headers=auth).json()["silences"]] == ["expired"]
    assert api.client.delete("/api/v1/silences/nope", headers=auth).status_code == 404
    assert api.client.get("/api/v1/silences/nope", headers=auth).status_code == 404
    assert api.client.get("/api/v1/silences?state=gone", headers=auth).status_code == 422


def test_bad_silences_are_refused_naming_the_field(api: Api) -> None:
    assert (
        api.post("/api/v1/silences", None, {"matchers": ['a="b"'], "duration": "1h", "comment": "c"}).status_code == 401
    )
    bad = api.post("/api/v1/silences", API, {"matchers": ["a"], "duration": "1h", "comment": "c"})
    assert bad.status_code == 422
    assert bad.json()["problems"][0]["field"] == "matchers"
    assert "not a matcher" in bad.json()["problems"][0]["error"]
    past = api.post("/api/v1/silences", API, {"matchers": ['a="b"'], "ends_at": "2020-01-01T00:00:00Z", "comment": "c"})
    assert past.status_code == 422 and "in the past" in past.json()["problems"][0]["error"]
    no_comment = api.post("/api/v1/silences", API, {"matchers": ['a="b"'], "duration": "1h"})
    assert no_comment.status_code == 422 and no_comment.json()["problems"][0]["field"] == "comment"
    auth = {"Authorization": f"Bearer {API}"}
    assert api.client.get("/api/v1/silences", headers=auth).json()["silences"] == []


def test_every_time_of_a_ticket_is_iso_8601(api: Api) -> None:
    t = ticket(notify_at=T0, notified_at=T0, stable_at=T0, flapping=True, muted_until=T0)
    db.project(
        api.engine, [TicketEvent(change_id="tl-1:1", change=Change.opened, actor="am", at=T0, ticket=t, trace_id="t")]
    )
    one = api.client.get("/api/v1/tickets/tl-1", headers={"Authorization": f"Bearer {API}"})
    assert one.status_code == 200
    body = one.json()
    assert all(body[k] == T0.isoformat() for k in ("notify_at", "notified_at", "stable_at", "muted_until", "opened_at"))


def test_expiring_a_pending_silence_ends_it_before_it_starts(api: Api) -> None:
    auth = {"Authorization": f"Bearer {API}"}
    body = {"matchers": ['a="b"'], "starts_at": "2099-01-01T00:00:00Z", "duration": "1h", "comment": "later"}
    sid = api.post("/api/v1/silences", API, body).json()["silence_id"]
    gone = api.client.delete(f"/api/v1/silences/{sid}", headers=auth).json()
    assert gone["state"] == "expired" and gone["starts_at"] == gone["ends_at"]
    again = api.client.delete(f"/api/v1/silences/{sid}", headers=auth).json()
    assert again["ends_at"] == gone["ends_at"], "an expired silence stays as it is"


class BrokenPublisher(FakePublisher):
    """A publisher with a bug: what a handler lets out becomes a 500."""

    async def publish(self, records: Any) -> None:
        raise RuntimeError(f"a bug in the publisher ({len(records)} records)")


def test_every_answer_carries_a_request_id_the_callers_when_it_is_plain(api: Api) -> None:
    mine = api.client.get("/healthz", headers={"X-Request-Id": "req-42.a:b"})
    assert mine.headers["x-request-id"] == "req-42.a:b"
    for bad in ("", "x" * 129, "two words", "a/b"):
        fresh = api.client.get("/healthz", headers={"X-Request-Id": bad}).headers["x-request-id"]
        assert fresh != bad and len(fresh) == 32
    first, second = (api.client.get("/readyz").headers["x-request-id"] for _ in range(2))
    assert first != second


def post_as_the_service_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], publisher: Any
) -> tuple[httpx.Response, str, int]:
    """One webhook POST to an app over ``publisher``, logging as the service does (JSON lines, plain tracebacks,
    no frame locals): the answer, what was logged, and /healthz's status after it."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 't.db'}")
    db.init_db(engine)
    app = create_app(IntakeDeps(CONFIG, publisher, engine, Topics("t.", 2), CollectorRegistry()))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("intake")
    try:
        with TestClient(app) as client:
            capsys.readouterr()
            resp = client.post(
                "/api/v1/integrations/portal",
                content=orjson.dumps({"summary": "broken", "dedup_key": "k1"}),
                headers={"Authorization": f"Bearer {GEN}"},
            )
            alive = client.get("/healthz").status_code
    finally:
        structlog.reset_defaults()
        root.handlers[:], root.level = handlers, level
    return resp, capsys.readouterr().err, alive


def test_a_503_names_its_request_id_and_the_log_has_the_brokers_traceback_under_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    resp, logged, _ = post_as_the_service_logs(tmp_path, capsys, FakePublisher(down=True))
    assert resp.status_code == 503 and resp.headers["retry-after"] == "5"
    rid = resp.json()["request_id"]
    assert resp.headers["x-request-id"] == rid
    assert "publish_unavailable" in logged and rid in logged
    assert "Traceback" in logged and "PublishUnavailableError: fake broker is down" in logged
    assert GEN not in logged


def test_a_500_names_its_request_id_and_the_log_has_the_traceback_under_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    resp, logged, alive = post_as_the_service_logs(tmp_path, capsys, BrokenPublisher())
    assert resp.status_code == 500
    rid = resp.json()["request_id"]
    assert resp.headers["x-request-id"] == rid and "internal error" in resp.json()["error"]
    assert "request_failed" in logged and rid in logged
    assert "Traceback" in logged and "RuntimeError: a bug in the publisher (1 records)" in logged
    assert GEN not in logged, "the caller's token is not in the log"
    assert alive == 200, "the process goes on"


def test_an_action_links_token_is_not_logged_with_its_path() -> None:
    assert loggable_path("/act/secret-token.sig") == "/act/…"
    assert loggable_path("/api/v1/tickets/tl-1") == "/api/v1/tickets/tl-1"


WINDOW_VALUE = (
    st.none()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["2h", "999999999999d", "36501d", "0s", "1d1h", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"])
    | st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-12)), timezone(timedelta(hours=14))])).map(
        lambda d: d.isoformat()
    )
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fields=st.dictionaries(st.sampled_from(["starts_at", "ends_at", "duration", "person"]), WINDOW_VALUE, max_size=4),
    path=st.sampled_from(["/api/v1/silences", "/api/v1/oncall/ops/overrides"]),
)
def test_absurd_windows_for_silences_and_overrides_are_422s_never_500s(
    api: Api, fields: dict[str, Any], path: str
) -> None:
    body = {"matchers": ['service="db"'], "comment": "fuzz", "created_by": "alice", **fields}
    resp = api.post(path, API, json.dumps(body).encode())  # json: integers beyond 64 bits too
    assert resp.status_code < 500, (body, resp.status_code, resp.text)
    if resp.status_code == 422:
        assert resp.json()["problems"], "a 422 says which field"


def test_truncated_alerts_are_counted_and_said_and_an_integrations_own_severity_words_apply(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 't.db'}")
    db.init_db(engine)
    config = IntakeConfig.model_validate(
        {
            "integrations": [
                {"name": "zbx", "format": "alertmanager", "token": AM, "severities": {"Disaster": "critical"}}
            ]
        }
    )
    publisher, registry = FakePublisher(), CollectorRegistry()
    app = create_app(IntakeDeps(config, publisher, engine, Topics("t.", 2), registry))

    def alert(fingerprint: str, severity: str) -> dict[str, Any]:
        labels = {"alertname": "Disk", "severity": severity}
        return {"status": "firing", "labels": labels, "startsAt": "2026-12-03T08:00:00Z", "fingerprint": fingerprint}

    alerts = [alert("a", "DISASTER"), alert("b", "page"), alert("c", "sev-weird"), alert("d", "sev-weird")]
    body = {"version": "4", "status": "firing", "truncatedAlerts": 7, "alerts": alerts}
    with TestClient(app) as client:
        resp = client.post(
            "/api/v1/integrations/zbx", content=orjson.dumps(body), headers={"Authorization": f"Bearer {AM}"}
        )
        plain = client.post(
            "/api/v1/integrations/zbx",
            content=orjson.dumps({**body, "truncatedAlerts": 0, "alerts": alerts[:1]}),
            headers={"Authorization": f"Bearer {AM}"},
        )
    assert resp.status_code == 202 and resp.json()["truncated_alerts"] == 7
    assert "truncated_alerts" not in plain.json()
    severities = [InboundEvent.model_validate_json(r.value).severity.value for r in publisher.records[:4]]
    assert severities == ["critical", "critical", "warning", "warning"]

    def sample(name: str) -> float | None:
        return registry.get_sample_value(name, {"integration": "zbx"})

    assert sample("ticketloop_intake_truncated_alerts_total") == 7
    assert sample("ticketloop_intake_unmapped_severity_total") == 2


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        (
            "POST",
            "/api/v1/silences",
            {"matchers": ['a="b"'], "comment": "c", "starts_at": "9999-12-31T20:00:00-12:00", "duration": "1h"},
        ),
        ("POST", "/api/v1/silences", {"matchers": ['a="b"'], "comment": "c", "ends_at": "9999-12-31T23:00:00-12:00"}),
        ("POST", "/api/v1/tickets/tl-1/snooze", {"until": "9999-12-31T23:00:00-12:00"}),
        (  # a start within the bounds and a duration past them
            "POST",
            "/api/v1/silences",
            {"matchers": ['a="b"'], "comment": "c", "starts_at": "9000-12-31T23:00:00Z", "duration": "36500d"},
        ),
        ("GET", "/api/v1/oncall?at=0001-01-01T00:00:00%2B01:00", None),
        ("GET", "/api/v1/oncall?at=9999-12-31T23:00:00-12:00", None),
    ],
)
def test_times_past_what_the_loop_can_store_are_422s_naming_the_field(
    api: Api, method: str, path: str, body: dict[str, Any] | None
) -> None:
    seed(api)
    content = orjson.dumps(body) if body is not None else None
    resp = api.client.request(method, path, content=content, headers={"Authorization": f"Bearer {API}"})
    assert resp.status_code == 422, resp.text
    assert "1970" in resp.text and "9000" in resp.text
    assert api.publisher.records == []


def test_a_generic_event_from_the_year_9999_in_another_zone_is_a_422(api: Api) -> None:
    body = {"summary": "s", "occurred_at": "9999-12-31T23:00:00-12:00"}
    resp = api.post("/api/v1/integrations/portal", GEN, body)
    assert resp.status_code == 422 and resp.json()["problems"][0]["field"] == "occurred_at"


@pytest.mark.parametrize("cut", ["body", "answer"])
async def test_a_client_gone_mid_request_is_an_info_line_without_a_traceback_or_a_500(
    cut: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sender that closes mid-body (or before its answer is written) is no error of ours: 4,000 slow-loris
    connections closed wrote 4,002 tracebacks at error level before."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if cut == "body":
            await Request(scope, receive).body()  # the server says the client disconnected: ClientDisconnect
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True reading=False 0x7f>")

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/v1/integrations/x", "headers": [], "query_string": b""}
    with structlog.testing.capture_logs() as logs:
        # a logger not yet used: the module's own may be cached (cache_logger_on_first_use) by an earlier test's
        monkeypatch.setattr(edge, "log", structlog.get_logger("services.intake.edge"))
        await RequestIds(app)(scope, receive, send)
    assert sent == [], "nobody to answer"
    assert [(e["event"], e["log_level"]) for e in logs] == [("request_abandoned", "info")]
    assert logs[0]["error"] == ("ClientDisconnect" if cut == "body" else "RuntimeError")


@pytest.mark.parametrize(("value", "length"), [(None, None), ("0", 0), ("2048", 2048)])
def test_a_declared_length_of_ascii_digits_is_taken(value: str | None, length: int | None) -> None:
    assert edge.declared_length(value) == length


@pytest.mark.parametrize("value", ["\u00b2", "1\u0662", "", "-1", "12 ", "0x10"])
def test_a_declared_length_that_is_no_number_of_bytes_is_400(value: str) -> None:
    with pytest.raises(edge.HttpError) as raised:
        edge.declared_length(value)
    assert (raised.value.status, raised.value.error) == (400, "Content-Length must be a number of bytes")


async def test_a_content_length_of_a_superscript_digit_is_400_not_a_server_error(tmp_path: Path) -> None:
    """As an ASGI server that passes header bytes through hands it over: b"\\xb2" reads as "²" (latin-1), which
    ``str.isdigit`` takes and ``int`` refuses; it was a 500 with a traceback. Nothing is published."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 't.db'}")
    db.init_db(engine)
    publisher = FakePublisher()
    app = create_app(IntakeDeps(CONFIG, publisher, engine, Topics("t.", 2), CollectorRegistry(), max_body_bytes=2048))
    headers = [(b"authorization", f"Bearer {GEN}".encode()), (b"content-length", b"\xb2")]
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/integrations/portal",
        "raw_path": b"/api/v1/integrations/portal",
        "headers": headers,
        "query_string": b"",
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b'{"summary": "x"}', "more_body": False}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    assert start["status"] == 400
    assert orjson.loads(body)["error"] == "Content-Length must be a number of bytes"
    assert publisher.records == []
