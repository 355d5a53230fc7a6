"""Roles and who acts: each role against each endpoint of the API (a table), and the actor recorded is the
authenticated client, or a person it is allowed to act for, never a free field of the request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from services.intake.api import create_app
from services.intake.config import IntakeConfig
from services.intake.edge import IntakeDeps
from shared.events import Change, Command, TicketEvent
from shared.store import db
from shared.streaming.topics import Topics
from tests.fakes import FakePublisher
from tests.support import roles
from tests.unit.factories import T0, ticket


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, FakePublisher]]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 't.db'}")
    db.init_db(engine)
    t = ticket(ticket_id="tl-1")
    db.project(
        engine, [TicketEvent(change_id="tl-1:1", change=Change.opened, actor="am", at=T0, ticket=t, trace_id="t")]
    )
    config = IntakeConfig.model_validate({"integrations": [], "api_clients": roles.clients()})
    publisher = FakePublisher()
    app = create_app(IntakeDeps(config, publisher, engine, Topics("t.", 2), CollectorRegistry()))
    with TestClient(app) as c:
        yield c, publisher


@pytest.mark.parametrize("role", sorted(roles.TOKENS))
@pytest.mark.parametrize(("method", "path", "body", "needed"), roles.ENDPOINTS)
def test_each_role_against_each_endpoint(
    client: tuple[TestClient, FakePublisher], role: str, method: str, path: str, body: object, needed: str
) -> None:
    http, _ = client
    auth = {"Authorization": f"Bearer {roles.TOKENS[role]}"}
    resp = http.request(method, path.format(ticket="tl-1"), content=roles.body_of(body), headers=auth)
    assert roles.verdict(role, needed, resp.status_code, resp.text) is None, (method, path)


def test_the_actor_is_the_client_or_a_person_it_may_act_for_and_both_are_recorded(
    client: tuple[TestClient, FakePublisher],
) -> None:
    http, publisher = client
    console = {"Authorization": f"Bearer {roles.CONSOLE_TOKEN}"}
    responder = {"Authorization": f"Bearer {roles.TOKENS['responder']}"}
    assert http.post("/api/v1/tickets/tl-1/ack", content=b"{}", headers=console).status_code == 202
    assert http.post("/api/v1/tickets/tl-1/ack", content=b'{"actor": "alice"}', headers=console).status_code == 202
    mallory = http.post("/api/v1/tickets/tl-1/ack", content=b'{"actor": "mallory"}', headers=console)
    assert mallory.status_code == 403 and "may not act for 'mallory'" in mallory.json()["error"]
    assert http.post("/api/v1/tickets/tl-1/ack", content=b'{"actor": "alice"}', headers=responder).status_code == 403
    own, for_alice = (Command.model_validate_json(r.value) for r in publisher.records)
    assert (own.actor, own.via) == ("console", None)
    assert (for_alice.actor, for_alice.via) == ("alice", "console")
    silence = {"matchers": ['service="db"'], "duration": "1h", "comment": "c", "created_by": "mallory"}
    refused = http.post("/api/v1/silences", content=orjson.dumps(silence), headers=console)
    assert refused.status_code == 403
    made = http.post("/api/v1/silences", content=orjson.dumps({**silence, "created_by": "alice"}), headers=console)
    assert made.status_code == 201 and made.json()["created_by"] == "alice"
    unnamed = {k: v for k, v in silence.items() if k != "created_by"}
    assert (
        http.post("/api/v1/silences", content=orjson.dumps(unnamed), headers=responder).json()["created_by"]
        == "responder"
    )
