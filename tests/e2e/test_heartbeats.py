"""A dead man's switch end to end (intake and router as processes, the real broker): beats keep it quiet; when
they stop, a ticket opens on the router's timer, also across a SIGKILL of the router; the next beat resolves it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.configs import API_TOKEN, intake_and_router
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e
CRON_TOKEN = "test-cron-token-0123456789abcdef"
BEAT = "{name: nightly-backup, every: 1s, grace: 2s}"


def test_a_missing_heartbeat_opens_a_ticket_across_a_router_kill_and_a_beat_resolves_it(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    stack = intake_and_router(
        kafka_bootstrap, tmp_path, f"{{name: cron, format: generic, token: {CRON_TOKEN}, heartbeat: {BEAT}}}", "e2e-hb"
    )
    api = httpx.Client(base_url=stack.intake_url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)

    def beat() -> None:
        resp = httpx.post(
            f"{stack.intake_url}/api/v1/heartbeats/nightly-backup",
            headers={"Authorization": f"Bearer {CRON_TOKEN}"},
            timeout=10,
        )
        assert resp.status_code == 202, resp.text

    def tickets() -> list[dict[str, object]]:
        return list(api.get("/api/v1/tickets").json()["tickets"])

    try:
        stack.wait_ready()
        beat()
        # killed while it holds the beat, in a transaction or committed: either way the timer fires after it
        stack.kill("router")
        stack.start("router")
        wait_for(
            "the missing heartbeat's ticket",
            lambda: any(t["state"] == "open" for t in tickets()),
            stack=stack,
            timeout=90,
        )
        [opened] = tickets()
        beat()
        wait_for(
            "the ticket resolved by the next beat", lambda: tickets()[0]["state"] == "resolved", stack=stack, timeout=60
        )
    finally:
        stack.stop_all()
    assert "heartbeat nightly-backup missing" in str(opened["summary"])
    assert opened["severity"] == "critical"
