"""Feedback that matches a project's known issue gets the workaround on its timeline and, at once, by email
to the reporter (intake, router and notifier as processes; a real SMTP server)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.local.kafka_local import free_port
from deploy.local.sinks import SmtpSink
from deploy.local.stack import Stack
from tests.support.configs import API_TOKEN, GEN_TOKEN, write_config

pytestmark = pytest.mark.e2e

PROJECTS = """
projects:
  - name: webshop
    customer: acme
    matchers: ['customer="acme"']
    go_live: {go_live}
    implementation: {team: web-team, engineers: [ian]}
    operations: {team: operations}
    known_issues:
      - id: KI-7
        title: Invoice PDF is empty in Safari
        keywords: [invoice, pdf]
        workaround: Download the invoice from the order page instead.
        reply_to_reporter: true
"""


def test_matching_feedback_gets_the_workaround_at_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    smtp = SmtpSink(port=free_port()).start()
    stack = Stack(
        bootstrap=kafka_bootstrap,
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        config_dir=write_config(
            tmp_path, projects=PROJECTS.replace("{go_live}", (datetime.now(UTC) - timedelta(days=1)).isoformat())
        ),
        workdir=tmp_path / "logs",
        intake_port=free_port(),
        smtp_port=smtp.port,
        extra_env={"TICKETLOOP_TOPIC_PREFIX": f"e2e-ki-{time.time_ns()}."},
    )
    for service in ("intake", "router", "notifier"):
        stack.start(service)
    try:
        stack.wait_ready()
        resp = httpx.post(
            f"{stack.intake_url}/api/v1/integrations/portal",
            json={
                "summary": "My invoice PDF is empty",
                "kind": "feedback",
                "reporter": "ann@acme.example",
                "labels": {"customer": "acme"},
            },
            headers={"Authorization": f"Bearer {GEN_TOKEN}"},
            timeout=10,
        )
        assert resp.status_code == 202
        deadline = time.monotonic() + 90
        reply: list[Any] = []
        while not reply:
            stack.check_alive()
            assert time.monotonic() < deadline, "the reporter never got the workaround"
            reply = [m for m in smtp.received() if "ann@acme.example" in m.recipients]
            time.sleep(0.3)
        api = httpx.Client(base_url=stack.intake_url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)
        [ticket] = api.get("/api/v1/tickets").json()["tickets"]
        timeline = api.get(f"/api/v1/tickets/{ticket['ticket_id']}").json()["timeline"]
    finally:
        stack.stop_all()
        smtp.stop()
    body = reply[0].message.get_content()
    assert "Download the invoice from the order page instead." in body
    assert ticket["ticket_id"] in reply[0].subject
    assert (ticket["known_issue"], ticket["team"], ticket["person"]) == ("KI-7", "web-team", "ian")
    assert [e["change"] for e in timeline] == ["opened", "workaround_suggested"]
    assert len(reply) == 1
