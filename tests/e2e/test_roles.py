"""Roles against the running intake (the real broker, the router projecting what was done): each role against
each endpoint of the API (the table in tests/support/roles.py), and a client acting for a person puts both on the
ticket's timeline, the person as the actor and the client as ``via``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import roles
from tests.support.configs import API_TOKEN, GEN_TOKEN, intake_and_router
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def test_each_role_against_each_endpoint_and_the_timeline_names_who_acted(kafka_bootstrap: str, tmp_path: Path) -> None:
    stack = intake_and_router(kafka_bootstrap, tmp_path, None, "e2e-roles", clients=roles.clients())
    try:
        stack.wait_ready()
        api = httpx.Client(base_url=stack.intake_url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)

        def opened(summary: str) -> str:
            sent = httpx.post(
                f"{stack.intake_url}/api/v1/integrations/portal",
                json={"summary": summary, "dedup_key": summary, "severity": "error", "labels": {"service": "db"}},
                headers={"Authorization": f"Bearer {GEN_TOKEN}"},
                timeout=10,
            )
            assert sent.status_code == 202, sent.text
            listed = lambda: [t for t in api.get("/api/v1/tickets").json()["tickets"] if t["summary"] == summary]  # noqa: E731
            return str(wait_for(f"the ticket {summary!r}", listed, stack=stack)[0]["ticket_id"])

        # a client acting for a person: the person is the actor, the client is recorded with it
        ticket = opened("replica lag on db-1")
        console = {"Authorization": f"Bearer {roles.CONSOLE_TOKEN}"}
        acked = httpx.post(
            f"{stack.intake_url}/api/v1/tickets/{ticket}/ack", json={"actor": "alice"}, headers=console, timeout=10
        )
        assert acked.status_code == 202, acked.text
        refused = httpx.post(
            f"{stack.intake_url}/api/v1/tickets/{ticket}/comment",
            json={"actor": "mallory", "reason": "mine now"},
            headers=console,
            timeout=10,
        )
        assert refused.status_code == 403 and "may not act for 'mallory'" in refused.json()["error"]

        def acknowledged() -> dict[str, Any] | None:
            entries = api.get(f"/api/v1/tickets/{ticket}").json()["timeline"]
            return next((e for e in entries if e["change"] == "acknowledged"), None)

        entry = wait_for("the acknowledgement on the timeline", acknowledged, stack=stack)
        assert (entry["actor"], entry["via"]) == ("alice", "console")
        opened_entry = api.get(f"/api/v1/tickets/{ticket}").json()["timeline"][0]
        assert (opened_entry["change"], opened_entry["via"]) == ("opened", None)

        # each role against each endpoint, on another ticket
        other = opened("disk full on db-2")
        wrong = []
        for role, token in roles.TOKENS.items():
            for method, path, body, needed in roles.ENDPOINTS:
                resp = httpx.request(
                    method,
                    f"{stack.intake_url}{path.format(ticket=other)}",
                    content=roles.body_of(body),
                    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                    timeout=10,
                )
                problem = roles.verdict(role, needed, resp.status_code, resp.text)
                if problem is not None:
                    wrong.append(f"{method} {path}: {problem}")
        assert wrong == []
        stack.check_alive()
    finally:
        stack.stop_all()
