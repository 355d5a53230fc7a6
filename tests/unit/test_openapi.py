"""The OpenAPI document: it names every route the app serves (and nothing else), and it is a valid OpenAPI 3.1
document that schemathesis can load."""

from __future__ import annotations

from pathlib import Path

import schemathesis
from prometheus_client import CollectorRegistry
from starlette.routing import Route
from starlette.testclient import TestClient

from services.intake.api import create_app
from services.intake.config import IntakeConfig
from services.intake.edge import IntakeDeps
from services.intake.openapi import OPERATIONS
from shared.store import db
from shared.streaming.topics import Topics
from tests.fakes import FakePublisher

CONFIG = IntakeConfig.model_validate(
    {
        "integrations": [
            {"name": "am", "format": "alertmanager", "token": "am-token-0123456789abcdef"},
            {"name": "cron", "format": "generic", "token": "cron-token-0123456789abc", "heartbeat": {"every": "1m"}},
        ]
    }
)


def test_the_document_names_exactly_the_routes_served_and_loads_as_openapi(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 't.db'}")
    db.init_db(engine)
    app = create_app(IntakeDeps(CONFIG, FakePublisher(), engine, Topics("t.", 2), CollectorRegistry()))
    served = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or set())
        if method != "HEAD"
    }
    assert served == {(op.method, op.path) for op in OPERATIONS}
    with TestClient(app) as client:
        spec = client.get("/openapi.json").json()
    assert spec["paths"]["/api/v1/integrations/{name}"]["post"]["parameters"][0]["schema"]["enum"] == ["am", "cron"]
    assert spec["paths"]["/api/v1/heartbeats/{name}"]["post"]["parameters"][0]["schema"]["enum"] == ["cron"]
    body = spec["paths"]["/api/v1/integrations/{name}"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["oneOf"] == [
        {"$ref": "#/components/schemas/AlertmanagerWebhook"},
        {"$ref": "#/components/schemas/GenericEvent"},
    ]
    loaded = schemathesis.openapi.from_dict(spec)
    assert len(list(loaded.get_all_operations())) == len(OPERATIONS)
