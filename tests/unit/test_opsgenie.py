"""Opsgenie's alert API subset at intake: create, acknowledge and close by alias, GenieKey auth, Opsgenie's answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from services.intake.api import create_app
from services.intake.config import IntakeConfig
from services.intake.edge import IntakeDeps
from services.intake.formats import opsgenie
from shared.events import Change, EventStatus, InboundEvent, Severity
from shared.store import db
from shared.streaming.codec import encode
from shared.streaming.topics import Topics
from tests.fakes import FakePublisher
from tests.unit.factories import T0
from tests.unit.test_router_service import FLAT, changes, router_broker

KEY = "genie-key-0123456789abcdef"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, FakePublisher]]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 't.db'}")
    db.init_db(engine)
    config = IntakeConfig.model_validate({"integrations": [{"name": "og", "format": "opsgenie", "token": KEY}]})
    publisher = FakePublisher()
    app = create_app(IntakeDeps(config, publisher, engine, Topics("t.", 2), CollectorRegistry()))
    with TestClient(app) as c:
        yield c, publisher


def call(http: TestClient, path: str, body: Any = None, key: str = KEY) -> Any:
    content = orjson.dumps(body) if body is not None else b""
    return http.post(path, content=content, headers={"Authorization": f"GenieKey {key}"})


CREATE = {
    "message": "Disk almost full on db-1",
    "alias": "disk-db-1",
    "description": "94% used on /var",
    "tags": ["db", "prod"],
    "details": {"host": "db-1"},
    "entity": "db-1",
    "source": "zabbix",
    "priority": "P2",
}


def test_create_acknowledge_and_close_by_alias_are_events_of_one_alert(
    client: tuple[TestClient, FakePublisher],
) -> None:
    http, publisher = client
    made = call(http, "/v2/alerts", CREATE)
    assert made.status_code == 202
    assert made.json()["result"] == "Request will be processed" and made.json()["requestId"]
    assert isinstance(made.json()["took"], float)
    assert call(http, "/v2/alerts/disk-db-1/acknowledge?identifierType=alias", {"user": "olga"}).status_code == 202
    assert call(http, "/v2/alerts/disk-db-1/close?identifierType=alias").status_code == 202
    created, acked, closed = (InboundEvent.model_validate_json(r.value) for r in publisher.records)
    assert {e.dedup_key for e in (created, acked, closed)} == {"og/disk-db-1"}
    assert [e.status for e in (created, acked, closed)] == [
        EventStatus.firing,
        EventStatus.acknowledged,
        EventStatus.resolved,
    ]
    assert created.severity is Severity.error and created.summary == "Disk almost full on db-1"
    assert created.labels == {"entity": "db-1", "source": "zabbix", "detail_host": "db-1", "tags": "db,prod"}
    assert created.annotations["description"] == "94% used on /var" and acked.annotations == {"user": "olga"}


def test_the_same_create_again_is_a_new_event_so_an_alert_firing_after_its_close_reopens(tmp_path: Path) -> None:
    broker, topics = router_broker(tmp_path, FLAT)
    body = orjson.dumps(CREATE)

    def send(verb: opsgenie.Verb, payload: Any, raw: bytes, minutes: int) -> None:
        at = T0 + timedelta(minutes=minutes)
        alias = None if verb == "create" else "disk-db-1"
        [ev] = opsgenie.to_events(verb, payload, alias, integration="og", raw=raw, received_at=at, trace_id="t")
        broker.produce(topics.events.name, ev.dedup_key.encode(), encode(ev))
        broker.run()

    send("create", CREATE, body, 0)
    send("close", None, b"", 1)
    send("create", CREATE, body, 2)
    send("close", None, b"", 3)
    assert [c.change for c in changes(broker, topics)] == [
        Change.opened,
        Change.resolved,
        Change.reopened,
        Change.resolved,
    ]


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/v2/alerts", {"message": ""}, 422, "message"),
        ("/v2/alerts", {"message": "x" * 131}, 422, "message"),
        ("/v2/alerts", {"message": "m", "priority": "P9"}, 422, "priority"),
        ("/v2/alerts/disk-db-1/close", None, 422, "identifierType must be alias"),
        ("/v2/alerts/disk-db-1/close?identifierType=id", None, 422, "identifierType must be alias"),
        ("/v2/alerts", b"{nope", 400, "malformed JSON"),
    ],
)
def test_what_opsgenie_would_refuse_is_refused_saying_where(
    client: tuple[TestClient, FakePublisher], path: str, body: Any, status: int, says: str
) -> None:
    http, publisher = client
    content = body if isinstance(body, bytes) else orjson.dumps(body) if body is not None else b""
    resp = http.post(path, content=content, headers={"Authorization": f"GenieKey {KEY}"})
    assert resp.status_code == status
    assert says in resp.text and resp.json()["requestId"]
    assert publisher.records == []


def test_a_wrong_or_missing_genie_key_is_401_and_publishes_nothing(client: tuple[TestClient, FakePublisher]) -> None:
    http, publisher = client
    assert call(http, "/v2/alerts", CREATE, key="not-the-key-0123456789").status_code == 401
    plain = http.post("/v2/alerts", content=orjson.dumps(CREATE), headers={"Authorization": f"Bearer {KEY}"})
    assert plain.status_code == 401 and "GenieKey" in plain.json()["message"]
    assert publisher.records == []


def test_an_alias_longer_than_a_dedup_key_holds_is_kept_by_prefix_and_hash() -> None:
    long = "a" * 512
    key = opsgenie.dedup_key("og", long)
    assert len(key) <= 255 and key.startswith("og/" + "a" * 160) and key != opsgenie.dedup_key("og", long + "b")
    assert opsgenie.genie_key("GenieKey  abc ") == "abc" and opsgenie.genie_key("Bearer abc") is None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        JSON,
        st.fixed_dictionaries(
            {"message": st.text(max_size=200)},
            optional={"alias": JSON, "tags": JSON, "details": JSON, "priority": JSON},
        ),
    ),
    alias=st.text(min_size=1, max_size=40).filter(lambda a: "/" not in a and "?" not in a and "#" not in a),
    verb=st.sampled_from(["create", "close", "acknowledge"]),
)
def test_any_opsgenie_request_is_answered_without_a_500(
    client: tuple[TestClient, FakePublisher], body: Any, alias: str, verb: str
) -> None:
    http, _ = client
    path = "/v2/alerts" if verb == "create" else f"/v2/alerts/{quote(alias, safe='')}/{verb}?identifierType=alias"
    resp = http.post(path, content=json.dumps(body).encode(), headers={"Authorization": f"GenieKey {KEY}"})
    assert resp.status_code < 500, (body, resp.status_code, resp.text)
