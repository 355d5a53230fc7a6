"""PagerDuty Events API v2 senders work unchanged: trigger, acknowledge and resolve at /v2/enqueue drive one
ticket through its lifecycle (intake and router as processes, the real broker)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.configs import API_TOKEN, intake_and_router
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e
ROUTING_KEY = "0123456789abcdef0123456789abcdef"


def test_trigger_acknowledge_resolve(kafka_bootstrap: str, tmp_path: Path) -> None:
    stack = intake_and_router(
        kafka_bootstrap, tmp_path, f"{{name: pd, format: pagerduty, token: {ROUTING_KEY}}}", "e2e-pd"
    )
    api = httpx.Client(base_url=stack.intake_url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)

    def send(action: str) -> dict[str, Any]:
        body: dict[str, Any] = {"routing_key": ROUTING_KEY, "event_action": action, "dedup_key": "srv-42"}
        if action == "trigger":
            body["payload"] = {"summary": "srv-42 unreachable", "source": "srv-42", "severity": "critical"}
        resp = httpx.post(f"{stack.intake_url}/v2/enqueue", json=body, timeout=10)
        assert resp.status_code == 202, resp.text
        return dict(resp.json())

    def state() -> str | None:
        tickets = api.get("/api/v1/tickets").json()["tickets"]
        return tickets[0]["state"] if tickets else None

    try:
        stack.wait_ready()
        assert send("trigger")["dedup_key"] == "srv-42"
        wait_for("the ticket", lambda: state() == "open", stack=stack)
        send("acknowledge")
        wait_for("acknowledged", lambda: state() == "acknowledged", stack=stack)
        send("resolve")
        wait_for("resolved", lambda: state() == "resolved", stack=stack)
        [ticket] = api.get("/api/v1/tickets").json()["tickets"]
        timeline = api.get(f"/api/v1/tickets/{ticket['ticket_id']}").json()["timeline"]
    finally:
        stack.stop_all()
    assert [e["change"] for e in timeline] == ["opened", "acknowledged", "resolved"]
    assert {e["actor"] for e in timeline} == {"pd"}
