"""The whole loop as a newcomer would see it: four service processes on the real Kafka broker, SQLite, a real
SMTP server and a real HTTP receiver that verifies webhook signatures. Nothing is mocked.

Waits are bounded polls for what a user would see (no timed asserts): each gives up after a generous limit.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.local.sinks import SmtpSink
from deploy.local.stack import Stack
from deploy.local.vendors.base import VendorSink
from tests.support.configs import AM_TOKEN, API_TOKEN, GEN_TOKEN, GRAFANA_KEY, GRAFANA_TOKEN, HOOK_SECRET
from tests.support.loop import alert, alertmanager_payload, running_loop
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def loop(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[Stack, SmtpSink, VendorSink]]:
    with running_loop(kafka_bootstrap, tmp_path) as running:
        yield running


def test_alert_to_ticket_email_webhook_escalation_and_resolution(loop: tuple[Stack, SmtpSink, VendorSink]) -> None:
    stack, smtp, hooks = loop
    api = httpx.Client(base_url=stack.intake_url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)
    am = httpx.Client(base_url=stack.intake_url, headers={"Authorization": f"Bearer {AM_TOKEN}"}, timeout=10)

    def ticket_for(fingerprint: str) -> dict[str, Any] | None:
        tickets = api.get("/api/v1/tickets").json()["tickets"]
        return next((t for t in tickets if t["dedup_key"] == f"am/{fingerprint}"), None)

    def mails(ticket_id: str, kind: str) -> list[Any]:
        return [
            m
            for m in smtp.received()
            if m.message["X-Ticketloop-Ticket"] == ticket_id and m.message["X-Ticketloop-Kind"] == kind
        ]

    def hooks_for(ticket_id: str, kind: str) -> list[Any]:
        return [h for h in hooks.received() if h.body["ticket_id"] == ticket_id and h.body["kind"] == kind]

    # A (critical -> P1, 8 s to acknowledge) will escalate; B (error -> P2, 15 s) is acknowledged in time.
    resp = am.post(
        "/api/v1/integrations/am",
        json=alertmanager_payload("firing", [alert("fp-a", "critical"), alert("fp-b", "error")]),
    )
    assert resp.status_code == 202, resp.text
    a = wait_for("ticket A in the API", lambda: ticket_for("fp-a"), stack=stack)
    b = wait_for("ticket B in the API", lambda: ticket_for("fp-b"), stack=stack)
    assert (a["team"], a["priority"], a["state"]) == ("web-team", "P1", "open")
    assert (b["team"], b["priority"]) == ("web-team", "P2")

    ack = api.post(f"/api/v1/tickets/{b['ticket_id']}/ack", json={"actor": "alice", "reason": "looking"})
    assert ack.status_code == 202, ack.text
    b_acked = wait_for(
        "B acknowledged",
        lambda: (t := api.get(f"/api/v1/tickets/{b['ticket_id']}").json())["state"] == "acknowledged" and t,
        stack=stack,
    )
    assert [e["change"] for e in b_acked["timeline"]] == ["opened", "acknowledged"]
    assert b_acked["timeline"][1]["actor"] == "alice"

    # assignment by email and by signed webhook
    wait_for("assignment email for A", lambda: mails(a["ticket_id"], "assignment"), stack=stack)
    assignment_hook = wait_for("assignment webhook for A", lambda: hooks_for(a["ticket_id"], "assignment"), stack=stack)
    assert assignment_hook[0].hook == "web"
    assert hooks.rejections == []

    # A escalates after its deadline
    esc_mail = wait_for("escalation email for A", lambda: mails(a["ticket_id"], "escalation"), stack=stack)
    assert "ESCALATION" in esc_mail[0].subject
    wait_for("escalation webhook for A", lambda: hooks_for(a["ticket_id"], "escalation"), stack=stack)
    a_timeline = wait_for(
        "the escalation on A's timeline",
        lambda: [
            e for e in api.get(f"/api/v1/tickets/{a['ticket_id']}").json()["timeline"] if e["change"] == "escalated"
        ],
        stack=stack,
    )
    assert a_timeline[0]["actor"] == "sla"
    assert "level 1 to web-team" in a_timeline[0]["reason"]
    breach = [e for e in api.get(f"/api/v1/tickets/{a['ticket_id']}").json()["timeline"] if e["change"] == "breached"]
    assert len(breach) == 1 and breach[0]["reason"].startswith("acknowledge target missed"), "recorded, not mailed"

    # C: kill the sla worker while C's deadline is pending, restart it: the escalation arrives exactly once.
    resp = am.post("/api/v1/integrations/am", json=alertmanager_payload("firing", [alert("fp-c", "critical")]))
    assert resp.status_code == 202
    c = wait_for("ticket C in the API", lambda: ticket_for("fp-c"), stack=stack)
    wait_for(
        "sla to start C's clock",
        lambda: (
            c["ticket_id"] in stack.log_path("sla").read_text()
            and '"clock_started"' in stack.log_path("sla").read_text()
        ),
        stack=stack,
    )
    assert not mails(c["ticket_id"], "escalation"), "C escalated before the kill: the deadline was not pending"
    stack.kill("sla", signal.SIGKILL)
    stack.start("sla")
    wait_for(
        "escalation email for C after the restart",
        lambda: mails(c["ticket_id"], "escalation"),
        timeout=120,
        stack=stack,
    )
    wait_for("escalation webhook for C", lambda: hooks_for(c["ticket_id"], "escalation"), stack=stack)

    # A resolves when Alertmanager says so
    resp = am.post(
        "/api/v1/integrations/am", json=alertmanager_payload("resolved", [alert("fp-a", "critical", "resolved")])
    )
    assert resp.status_code == 202
    resolved = wait_for(
        "A resolved",
        lambda: (t := api.get(f"/api/v1/tickets/{a['ticket_id']}").json())["state"] == "resolved" and t,
        stack=stack,
    )
    assert resolved["timeline"][-1]["change"] == "resolved"
    wait_for("resolution email for A", lambda: mails(a["ticket_id"], "resolution"), stack=stack)

    # By now B's 15 s deadline is long past: B, acknowledged in time, never escalated.
    b_opened = datetime.fromisoformat(b["opened_at"])
    wait_for("B's deadline to pass", lambda: (datetime.now(UTC) - b_opened).total_seconds() > 20, timeout=60)
    time.sleep(2 * 0.2 + 1)  # let the sla tick a few more times after B's deadline
    assert mails(b["ticket_id"], "escalation") == []
    assert hooks_for(b["ticket_id"], "escalation") == []

    # Exactly once, on both channels, after the SIGKILL and restart
    assert len(mails(c["ticket_id"], "escalation")) == 1
    assert len(hooks_for(c["ticket_id"], "escalation")) == 1
    assert len(mails(a["ticket_id"], "escalation")) == 1
    assert hooks.rejections == []

    # The SLA panels' numbers are on each worker's /metrics
    def metrics(service: str) -> str:
        return httpx.get(f"http://127.0.0.1:{stack.metrics_ports[service]}/metrics", timeout=5).text

    assert 'ticketloop_notifier_deliveries_total{channel="webhook",kind="escalation",status="sent"} 2.0' in metrics(
        "notifier"
    )
    assert 'ticketloop_router_ticket_changes_total{change="acknowledged",team="web-team"} 1.0' in metrics("router")
    assert "ticketloop_sla_timer_lateness_seconds_count" in metrics("sla")

    # No configured secret in any line any service wrote during the whole run
    secrets = {
        "alertmanager token": AM_TOKEN,
        "api token": API_TOKEN,
        "generic token": GEN_TOKEN,
        "grafana token": GRAFANA_TOKEN,
        "grafana hmac key": GRAFANA_KEY,
        "webhook signing secret": HOOK_SECRET,
        "webhook url": f"127.0.0.1:{hooks.port}/hooks/web",
    }
    logs = {path.name: path.read_text(errors="replace") for path in stack.workdir.glob("*.log")}
    assert {"intake.log", "router.log", "sla.log", "notifier.log"} <= set(logs)
    leaked = [(what, name) for what, secret in secrets.items() for name, text in logs.items() if secret in text]
    assert leaked == [], f"secrets in the logs: {leaked}"
