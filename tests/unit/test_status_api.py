"""GET /api/v1/status: an admin sees what intake takes in (formats, signing, limits, heartbeats, roles, forms,
mail) and how it stands (broker, schema revision); no token, token hash or signing key is in the answer."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from services.intake.api import create_app
from services.intake.config import IntakeConfig
from services.intake.edge import IntakeDeps
from shared.store import db, schema
from shared.streaming.topics import Topics
from tests.fakes import FakePublisher

ADMIN = "admin-token-0123456789abcdefghij"
VIEWER = "viewer-token-0123456789abcdefghi"
AM = "am-token-0123456789abcdefghijklmn"
GRAFANA = "grafana-token-0123456789abcdefgh"
KEY = "grafana-hmac-key-0123456789abcdef"
FORM = "form-token-0123456789abcdefghijkl"
SECRETS = (ADMIN, VIEWER, AM, GRAFANA, KEY, FORM, hashlib.sha256(AM.encode()).hexdigest())


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 't.db'}")
    db.init_db(engine)
    config = IntakeConfig.model_validate(
        {
            "integrations": [
                {
                    "name": "am",
                    "format": "alertmanager",
                    "token_sha256": SECRETS[-1],
                    "heartbeat": {"every": "1m"},
                    "severities": {"Disaster": "critical"},
                },
                {
                    "name": "grafana",
                    "format": "grafana",
                    "token": GRAFANA,
                    "signing_secret": KEY,
                    "rate_limit": {"requests": 10, "per": "1s"},
                },
            ],
            "api_clients": [
                {"name": "ops-admin", "token": ADMIN, "role": "admin"},
                {"name": "board", "token": VIEWER, "role": "viewer"},
            ],
            "forms": [{"name": "webshop", "token": FORM, "customer": "acme"}],
            "mail": {"addresses": ["support@acme.example"], "project": "webshop"},
        }
    )
    app = create_app(IntakeDeps(config, FakePublisher(), engine, Topics("t.", 2), CollectorRegistry()))
    with TestClient(app) as client:
        yield client


def test_an_admin_sees_the_configuration_and_no_secret(http: TestClient) -> None:
    resp = http.get("/api/v1/status", headers={"Authorization": f"Bearer {ADMIN}"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["kafka"] == "ready"
    assert body["schema_revision"] == body["schema_newest"] == schema.head()
    am, grafana = body["config"]["integrations"]
    assert am == {
        "name": "am",
        "format": "alertmanager",
        "signed": False,
        "rate_limit": None,
        "heartbeat": {"name": "am", "every_s": 60.0, "grace_s": 60.0},
        "severities": {"disaster": "critical"},
    }
    assert (grafana["signed"], grafana["rate_limit"]) == (True, {"requests": 10, "per_s": 1.0, "burst": 10})
    assert body["config"]["api_clients"] == [
        {"name": "ops-admin", "role": "admin", "acts_for": []},
        {"name": "board", "role": "viewer", "acts_for": []},
    ]
    assert body["config"]["forms"][0]["project"] == "webshop"
    assert body["config"]["mail"]["addresses"] == ["support@acme.example"]
    assert [s for s in SECRETS if s in resp.text] == []


def test_only_an_admin(http: TestClient) -> None:
    viewer = http.get("/api/v1/status", headers={"Authorization": f"Bearer {VIEWER}"})
    assert viewer.status_code == 403 and "this needs admin" in viewer.json()["error"]
    assert http.get("/api/v1/status").status_code == 401


def test_a_database_that_does_not_answer_is_reported_not_a_500(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 't.db'}")  # cannot be opened
    config = IntakeConfig.model_validate({"api_clients": [{"name": "ops-admin", "token": ADMIN, "role": "admin"}]})
    app = create_app(IntakeDeps(config, FakePublisher(), engine, Topics("t.", 2), CollectorRegistry()))
    with TestClient(app) as client:
        resp = client.get("/api/v1/status", headers={"Authorization": f"Bearer {ADMIN}"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["schema_revision"] == "unavailable"
