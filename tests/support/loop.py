"""The whole loop for end-to-end tests: the four services as processes on the given broker, SQLite, a real SMTP
server and a real HTTP receiver that verifies the webhook's signature; and Alertmanager's webhook bodies."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deploy.local.kafka_local import free_port
from deploy.local.sinks import SmtpSink
from deploy.local.stack import Stack
from deploy.local.vendors.base import VendorSink
from deploy.local.vendors.webhook import TicketloopWebhookVendor
from tests.support.configs import HOOK_SECRET, write_config


def alertmanager_payload(status: str, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="HighLatency"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "ticketloop",
        "groupLabels": {"alertname": "HighLatency"},
        "commonLabels": {"alertname": "HighLatency"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": alerts,
    }


def alert(
    fingerprint: str,
    severity: str,
    status: str = "firing",
    starts: str = "2026-11-24T10:00:00Z",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One Alertmanager alert (``service="web"`` unless ``labels`` says otherwise)."""
    return {
        "status": status,
        "labels": {
            "alertname": "HighLatency",
            "service": "web",
            "instance": fingerprint,
            "severity": severity,
            **(labels or {}),
        },
        "annotations": {"summary": f"latency high on {fingerprint}"},
        "startsAt": starts,
        "endsAt": "2026-11-24T11:00:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example:9090/graph",
        "fingerprint": fingerprint,
    }


@contextlib.contextmanager
def running_loop(kafka_bootstrap: str, tmp_path: Path, **config: Any) -> Iterator[tuple[Stack, SmtpSink, VendorSink]]:
    """The four services started and intake ready, over ``write_config(tmp_path, **config)`` and its own topics;
    everything stopped on exit."""
    hook_port = free_port()
    smtp = SmtpSink(port=free_port()).start()
    hooks = VendorSink(hook_port, [TicketloopWebhookVendor({"web": HOOK_SECRET})]).start()
    stack = Stack(
        bootstrap=kafka_bootstrap,
        database_url=f"sqlite:///{tmp_path / 'ticketloop.db'}",
        config_dir=write_config(tmp_path, hook_port=hook_port, **config),
        workdir=tmp_path / "logs",
        intake_port=free_port(),
        smtp_port=smtp.port,
        metrics_ports={"router": free_port(), "sla": free_port(), "notifier": free_port()},
        extra_env={"TICKETLOOP_TOPIC_PREFIX": f"e2e{int(time.time())}."},
    )
    stack.start_all()
    try:
        stack.wait_ready()
        yield stack, smtp, hooks
    finally:
        stack.stop_all()
        smtp.stop()
        hooks.stop()
