"""A real Alertmanager (Debian's package) posts its webhooks to intake; tickets follow its firing and resolved
notifications. Alerts are pushed into Alertmanager through its own v2 API, as Prometheus would."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.local.alertmanager import alertmanager
from deploy.local.kafka_local import free_port
from deploy.local.stack import Stack
from tests.support.configs import AM_TOKEN, API_TOKEN, write_config
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def push(am_url: str, alerts: list[dict[str, Any]]) -> None:
    httpx.post(f"{am_url}/api/v2/alerts", json=alerts, timeout=10).raise_for_status()


def alert(instance: str, *, ends: datetime | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "labels": {"alertname": "InstanceDown", "instance": instance, "service": "web", "severity": "critical"},
        "annotations": {"summary": f"{instance} is down"},
        "startsAt": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "generatorURL": "http://prometheus.example/graph",
    }
    if ends is not None:
        body["endsAt"] = ends.isoformat()
    return body


def test_tickets_follow_a_real_alertmanager(kafka_bootstrap: str, tmp_path: Path) -> None:
    stack = Stack(
        bootstrap=kafka_bootstrap,
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        config_dir=write_config(tmp_path),
        workdir=tmp_path / "logs",
        intake_port=free_port(),
        smtp_port=9,
        extra_env={"TICKETLOOP_TOPIC_PREFIX": f"e2e-am-{time.time_ns()}."},
    )
    stack.start("intake")
    stack.start("router")
    api = httpx.Client(base_url=stack.intake_url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)

    def by_instance() -> dict[str, dict[str, Any]]:
        tickets = api.get("/api/v1/tickets").json()["tickets"]
        return {t["labels"].get("instance", ""): t for t in tickets}

    try:
        stack.wait_ready()
        with alertmanager(tmp_path / "am", f"{stack.intake_url}/api/v1/integrations/am", AM_TOKEN) as am_url:
            started = [alert("web-1"), alert("web-2")]
            push(am_url, started)

            def both_open() -> dict[str, dict[str, Any]] | None:
                found = by_instance()
                return found if len(found) == 2 else None

            def web1_resolved() -> dict[str, dict[str, Any]] | None:
                found = by_instance()
                return found if found["web-1"]["state"] == "resolved" else None

            tickets = wait_for("tickets for both alerts", both_open, stack=stack)
            assert {t["team"] for t in tickets.values()} == {"web-team"}
            assert {t["priority"] for t in tickets.values()} == {"P1"}
            assert {t["state"] for t in tickets.values()} == {"open"}

            resolved = {**started[0], "endsAt": datetime.now(UTC).isoformat()}
            push(am_url, [resolved])
            after = wait_for("web-1 resolved", web1_resolved, stack=stack)
            assert after["web-2"]["state"] == "open"
            assert after["web-1"]["ticket_id"] == tickets["web-1"]["ticket_id"]
            timeline = api.get(f"/api/v1/tickets/{after['web-1']['ticket_id']}").json()["timeline"]
            assert [e["change"] for e in timeline] == ["opened", "resolved"]
            assert timeline[1]["actor"] == "am"
    finally:
        stack.stop_all()
