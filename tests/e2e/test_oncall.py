"""Tickets routed to a team go to the person on call for it: across a rotation handoff, and to an override made
with ``ticketloop oncall override``; the person is mailed in person (intake, router and notifier as processes,
the real broker, a real SMTP server)."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.local.kafka_local import free_port
from deploy.local.sinks import SmtpSink
from deploy.local.stack import Stack
from services.cli import main as cli
from tests.support.configs import API_TOKEN, GEN_TOKEN, write_config
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


PEOPLE = """
people:
  olga: {email: olga@example.test}
  oscar: {email: oscar@example.test}
  lena: {email: lena@example.test}
"""


def with_rotation(handoff: datetime) -> str:
    rotation = f'{{every: daily, handoff: "{handoff:%H:%M:%S}", time_zone: UTC, start: {handoff:%Y-%m-%d}}}'
    return PEOPLE + f"teams:\n  operations:\n    members: [olga, oscar]\n    rotation: {rotation}\n"


def test_team_tickets_follow_the_rotation_and_overrides(kafka_bootstrap: str, tmp_path: Path) -> None:
    # no rotation at first: the handoff is set once the stack runs (however long it took to start), in a
    # teams.yaml the services pick up while running
    teams = PEOPLE + "teams:\n  operations:\n    members: [olga, oscar]\n"
    smtp = SmtpSink(port=free_port()).start()
    stack = Stack(
        bootstrap=kafka_bootstrap,
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        config_dir=write_config(tmp_path, teams=teams),
        workdir=tmp_path / "logs",
        intake_port=free_port(),
        smtp_port=smtp.port,
        extra_env={"TICKETLOOP_TOPIC_PREFIX": f"e2e-oncall-{time.time_ns()}."},
    )
    counter = iter(range(1000))

    def send() -> str:
        summary = f"DiskFull on host-{next(counter)}"
        resp = httpx.post(
            f"{stack.intake_url}/api/v1/integrations/portal",
            json={"summary": summary, "dedup_key": summary, "severity": "error", "labels": {"service": "storage"}},
            headers={"Authorization": f"Bearer {GEN_TOKEN}"},
            timeout=10,
        )
        assert resp.status_code == 202, resp.text
        return summary

    def ticket(api: httpx.Client, summary: str) -> dict[str, Any] | None:
        found = [
            t for t in api.get("/api/v1/tickets", params={"limit": 1000}).json()["tickets"] if t["summary"] == summary
        ]
        return found[0] if found else None

    def mailed(ticket_id: str) -> list[str]:
        return sorted(r for m in smtp.received() if ticket_id in m.subject for r in m.recipients)

    for service in ("intake", "router", "notifier"):
        stack.start(service)
    try:
        stack.wait_ready()
        api = httpx.Client(base_url=stack.intake_url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)
        handoff = (datetime.now(UTC) + timedelta(seconds=15)).replace(microsecond=0)
        (stack.config_dir / "teams.yaml").write_text(with_rotation(handoff))

        def routed_by_rotation() -> dict[str, Any] | None:
            summary = send()
            t = wait_for("a ticket", lambda: ticket(api, summary), stack=stack)
            return t if t["person"] else None

        first = wait_for("the router to read the rotation", routed_by_rotation, stack=stack, timeout=60)
        opened = datetime.fromisoformat(first["opened_at"])
        assert opened < handoff, "the router took longer than 15 s to read teams.yaml"
        time.sleep(max(0.0, (handoff - datetime.now(UTC)).total_seconds()) + 0.5)
        after = send()
        second = wait_for("the ticket after the handoff", lambda: ticket(api, after), stack=stack)

        out = io.StringIO()
        argv = ["oncall", "override", "operations", "lena", "--duration", "1h", "--reason", "covering"]
        assert cli([*argv, "--api-url", stack.intake_url, "--api-token", API_TOKEN], out) == 0, out.getvalue()
        override_id = out.getvalue().strip()

        def lena_has_one() -> dict[str, Any] | None:
            # the router re-reads overrides every couple of seconds: new tickets go to lena from then on
            summary = send()
            t = wait_for("a ticket", lambda: ticket(api, summary), stack=stack)
            return t if t["person"] == "lena" else None

        third = wait_for("a ticket for the override", lena_has_one, stack=stack, timeout=60)
        mails = {
            name: wait_for(f"the mail to {name}", lambda t=t: mailed(t["ticket_id"]), stack=stack)  # type: ignore[misc]
            for name, t in (("oscar", first), ("olga", second), ("lena", third))
        }
        shown = api.get(f"/api/v1/tickets/{third['ticket_id']}").json()
    finally:
        stack.stop_all()
        smtp.stop()

    assert (first["team"], first["person"]) == ("operations", "oscar"), "the shift before the handoff"
    assert (second["team"], second["person"]) == ("operations", "olga"), "the shift after it"
    assert third["person"] == "lena"
    assert f"on call for operations: lena (override {override_id}" in shown["timeline"][0]["reason"]
    assert mails == {
        "oscar": ["ops@example.test", "oscar@example.test"],
        "olga": ["olga@example.test", "ops@example.test"],
        "lena": ["lena@example.test", "ops@example.test"],
    }
