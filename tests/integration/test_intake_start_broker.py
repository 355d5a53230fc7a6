"""intake's start on the real broker: once it serves, its producer is connected, so a worker started again (a
crash, a supervisor restart) answers its first posts 202, not 503 "not connected to Kafka yet"."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from services.intake.main import build
from shared.infra.settings import IntakeSettings

pytestmark = pytest.mark.integration

TOKEN = "start-token-0123456789abcdef"


def test_intake_serves_only_once_its_producer_is_connected(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "intake.yaml").write_text(f"integrations:\n  - {{name: gen, format: generic, token: {TOKEN}}}\n")
    for name, value in {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'tl.db'}",
        "CONFIG_DIR": str(tmp_path),
        "TOPIC_PREFIX": f"start{time.time_ns()}.",
    }.items():
        monkeypatch.setenv(f"TICKETLOOP_{name}", value)
    app, publisher = build(IntakeSettings())
    with TestClient(app) as client:  # the lifespan has run: intake would serve now
        assert publisher.ready
        resp = client.post(
            "/api/v1/integrations/gen", json={"summary": "first"}, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert resp.status_code == 202, resp.text
