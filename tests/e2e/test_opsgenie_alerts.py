"""Opsgenie senders only change the URL: create, acknowledge and close by alias at /v2/alerts drive one ticket
through its lifecycle (intake and router as processes, the real broker)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.configs import API_TOKEN, intake_and_router
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e
GENIE_KEY = "test-genie-key-0123456789abcdef"


def test_create_acknowledge_close(kafka_bootstrap: str, tmp_path: Path) -> None:
    stack = intake_and_router(
        kafka_bootstrap, tmp_path, f"{{name: og, format: opsgenie, token: {GENIE_KEY}}}", "e2e-og"
    )
    api = httpx.Client(base_url=stack.intake_url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)
    genie = {"Authorization": f"GenieKey {GENIE_KEY}"}

    def send(path: str, body: dict[str, Any] | None = None) -> None:
        resp = httpx.post(f"{stack.intake_url}{path}", json=body, headers=genie, timeout=10)
        assert resp.status_code == 202, resp.text
        assert resp.json()["result"] == "Request will be processed"

    def state() -> str | None:
        tickets = api.get("/api/v1/tickets").json()["tickets"]
        return tickets[0]["state"] if tickets else None

    try:
        stack.wait_ready()
        send("/v2/alerts", {"message": "srv-42 unreachable", "alias": "srv-42", "priority": "P1", "source": "nagios"})
        wait_for("the ticket", lambda: state() == "open", stack=stack)
        send("/v2/alerts/srv-42/acknowledge?identifierType=alias", {"user": "olga", "note": "on it"})
        wait_for("acknowledged", lambda: state() == "acknowledged", stack=stack)
        send("/v2/alerts/srv-42/close?identifierType=alias")
        wait_for("resolved", lambda: state() == "resolved", stack=stack)
        [ticket] = api.get("/api/v1/tickets").json()["tickets"]
        timeline = api.get(f"/api/v1/tickets/{ticket['ticket_id']}").json()["timeline"]
    finally:
        stack.stop_all()
    assert [e["change"] for e in timeline] == ["opened", "acknowledged", "resolved"]
    assert ticket["summary"] == "srv-42 unreachable" and ticket["severity"] == "critical"
