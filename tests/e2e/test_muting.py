"""Silences and inhibition mute notifications but never lose a ticket (intake, router and notifier as processes,
the real broker, a real SMTP server); the silence is made and expired with ``ticketloop silence``."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.local.kafka_local import free_port
from deploy.local.sinks import SmtpSink
from deploy.local.stack import Stack
from services.cli import main as cli
from tests.support.configs import API_TOKEN, GEN_TOKEN, ROUTING, write_config
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

INHIBIT = """
inhibit_rules:
  - name: site-down-mutes-its-hosts
    source_matchers: ['alertname="SiteDown"']
    target_matchers: ['alertname="HostDown"']
    equal: [site]
"""


def test_silences_and_inhibition_mute_notifications_but_keep_tickets(kafka_bootstrap: str, tmp_path: Path) -> None:
    smtp = SmtpSink(port=free_port()).start()
    stack = Stack(
        bootstrap=kafka_bootstrap,
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        config_dir=write_config(tmp_path, routing=ROUTING + INHIBIT),
        workdir=tmp_path / "logs",
        intake_port=free_port(),
        smtp_port=smtp.port,
        extra_env={"TICKETLOOP_TOPIC_PREFIX": f"e2e-mute-{time.time_ns()}."},
    )
    api = httpx.Client(base_url="http://127.0.0.1:9", headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)

    def send(dedup: str, summary: str, **labels: str) -> None:
        resp = httpx.post(
            f"{stack.intake_url}/api/v1/integrations/portal",
            json={"summary": summary, "dedup_key": dedup, "severity": "critical", "labels": labels},
            headers={"Authorization": f"Bearer {GEN_TOKEN}"},
            timeout=10,
        )
        assert resp.status_code == 202, resp.text

    def ticket(summary: str) -> dict[str, Any] | None:
        for t in api.get("/api/v1/tickets").json()["tickets"]:
            if t["summary"] == summary:
                found: dict[str, Any] = api.get(f"/api/v1/tickets/{t['ticket_id']}").json()
                return found
        return None

    def notified(summary: str) -> dict[str, Any] | None:
        t = ticket(summary)
        return t if t is not None and t["notifications"] else None

    def mails_about(ticket_id: str) -> list[Any]:
        return [m for m in smtp.received() if ticket_id in m.subject]

    for service in ("intake", "router", "notifier"):
        stack.start(service)
    try:
        stack.wait_ready()
        api = httpx.Client(base_url=stack.intake_url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)
        out = io.StringIO()
        argv = ["silence", "add", 'service="db"', "--duration", "1h", "--comment", "failover drill", "--author", "olga"]
        assert cli([*argv, "--api-url", stack.intake_url, "--api-token", API_TOKEN], out) == 0, out.getvalue()
        silence_id = out.getvalue().strip()

        send("db-1", "DbReplicaLag on db-1", service="db")
        send("web-1", "HighErrorRate on web-1", service="api")
        silenced = wait_for("the silenced ticket's muted notice", lambda: notified("DbReplicaLag on db-1"), stack=stack)
        loud = wait_for("the other ticket's mail", lambda: notified("HighErrorRate on web-1"), stack=stack)
        wait_for("the mail", lambda: mails_about(loud["ticket_id"]), stack=stack)

        send("site-bj", "SiteDown bj-1", alertname="SiteDown", site="bj-1")
        source = wait_for("the source ticket's mail", lambda: notified("SiteDown bj-1"), stack=stack)
        send("host-bj", "HostDown bj-1-host-7", alertname="HostDown", site="bj-1")
        send("host-sh", "HostDown sh-2-host-1", alertname="HostDown", site="sh-2")
        inhibited = wait_for("the inhibited notice", lambda: notified("HostDown bj-1-host-7"), stack=stack)
        other_site = wait_for("the other site's notice", lambda: notified("HostDown sh-2-host-1"), stack=stack)
        wait_for("the other site's mail", lambda: mails_about(other_site["ticket_id"]), stack=stack)

        out = io.StringIO()
        assert cli(["silence", "expire", silence_id, "--api-url", stack.intake_url, "--api-token", API_TOKEN], out) == 0
        send("db-2", "DbReplicaLag on db-2", service="db")
        after = wait_for("the mail after the silence ended", lambda: notified("DbReplicaLag on db-2"), stack=stack)
        wait_for("that mail", lambda: mails_about(after["ticket_id"]), stack=stack)
    finally:
        stack.stop_all()
        smtp.stop()

    # muted tickets are recorded and open like any other, with the reason on their notification log
    assert silenced["state"] == "open" and inhibited["state"] == "open"
    [muted] = silenced["notifications"]
    assert (muted["status"], muted["kind"]) == ("suppressed", "assignment")
    assert muted["detail"].startswith(f"silence: silence {silence_id} by olga until ")
    assert muted["detail"].endswith(": failover drill")
    [held] = inhibited["notifications"]
    assert held["status"] == "suppressed"
    assert (
        held["detail"]
        == f"inhibition: inhibited by firing ticket {source['ticket_id']} (rule site-down-mutes-its-hosts)"
    )
    assert mails_about(silenced["ticket_id"]) == [] and mails_about(inhibited["ticket_id"]) == []
    assert {n["status"] for n in after["notifications"]} == {"sent"}
    assert {n["status"] for n in source["notifications"]} == {"sent"}
