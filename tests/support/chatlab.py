"""The whole stack with every chat vendor's imitation (deploy/local/vendors/lab.py) and a real SMTP server, for
the end-to-end tests of notifications, one-click actions and chat outages."""

from __future__ import annotations

import contextlib
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from deploy.local.kafka_local import free_port
from deploy.local.sinks import SmtpSink
from deploy.local.stack import Stack
from deploy.local.vendors import lab
from deploy.local.vendors.base import ReceivedChat, VendorSink
from tests.support.configs import AM_TOKEN, API_TOKEN, write_config

LINK_KEY = "e2e-action-link-key-0123456789"
SLACK_SIGNING_SECRET = "e2e-slack-signing-secret"
TICKET_ID = re.compile(r"tl-[0-9a-f]{16}")

TEAMS = """
people:
  olga: {name: Olga Ops, email: olga@example.test, mobile: '13800000001'}
  ian: {name: Ian Implementer, email: ian@example.test, mobile: '13800000003'}
teams:
  operations:
    members: [olga]
  implementation:
    members: [ian]
"""

ROUTING = """
route:
  team: operations
  person: olga
  routes:
    - name: web
      matchers: ['service="web"']
      team: implementation
      person: ian
"""

SLA = """
policies:
  default:
    acknowledge: {P1: 10s, P2: 1h, P3: 1h, P4: 1h}
    escalation:
      - {after: 0s, team: owner}
"""


@dataclass
class ChatLab:
    stack: Stack
    chat: VendorSink
    smtp: SmtpSink

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.stack.intake_url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10
        )

    def alertmanager(self) -> httpx.Client:
        return httpx.Client(base_url=self.stack.intake_url, headers={"Authorization": f"Bearer {AM_TOKEN}"}, timeout=10)

    def about(self, ticket_id: str, vendor: str | None = None) -> list[ReceivedChat]:
        """Chat messages naming this ticket (individually, or as a line of a digest)."""
        return [m for m in self.chat.received(vendor) if ticket_id in m.title + m.text]


def notify_yaml(base: str) -> str:
    teams = {
        "operations": {"email": ["ops@example.test"], "channels": lab.entries(base)["operations"]},
        "implementation": {"email": ["impl@example.test"], "channels": lab.entries(base)["implementation"]},
    }
    return yaml.safe_dump({"teams": teams}, sort_keys=False)


@contextlib.contextmanager
def chat_lab(kafka_bootstrap: str, tmp_path: Path, **env: str) -> Iterator[ChatLab]:
    """The four services with the lab's channels for operations and implementation; ``env``: more settings."""
    chat = lab.sink(free_port()).start()
    smtp = SmtpSink(port=free_port()).start()
    config = write_config(tmp_path, sla=SLA, routing=ROUTING, teams=TEAMS, notify=notify_yaml(chat.url))
    stack = Stack(
        bootstrap=kafka_bootstrap,
        database_url=f"sqlite:///{tmp_path / 'ticketloop.db'}",
        config_dir=config,
        workdir=tmp_path / "logs",
        intake_port=free_port(),
        smtp_port=smtp.port,
        metrics_ports={"router": free_port(), "sla": free_port(), "notifier": free_port()},
        extra_env={
            "TICKETLOOP_TOPIC_PREFIX": f"chat{time.time_ns()}.",
            "TICKETLOOP_ACTION_LINK_KEYS": LINK_KEY,
            "TICKETLOOP_INTAKE_SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
            **env,
        },
    )
    stack.start_all()
    try:
        stack.wait_ready()
        yield ChatLab(stack, chat, smtp)
    finally:
        stack.stop_all()
        smtp.stop()
        chat.stop()


def tickets_per_message(messages: list[ReceivedChat]) -> Counter[str]:
    """How many messages named each ticket (a digest names each of its tickets once)."""
    seen: Counter[str] = Counter()
    for m in messages:
        seen.update(set(TICKET_ID.findall(m.title + "\n" + m.text)))
    return seen


def am_alert(fingerprint: str, service: str, severity: str = "warning") -> dict[str, object]:
    return {
        "status": "firing",
        "labels": {"alertname": "DiskFull", "service": service, "instance": fingerprint, "severity": severity},
        "annotations": {"summary": f"disk full on {fingerprint}"},
        "startsAt": "2026-11-24T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example:9090/graph",
        "fingerprint": fingerprint,
    }


def am_payload(alerts: list[dict[str, object]]) -> dict[str, object]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="DiskFull"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "ticketloop",
        "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": {"alertname": "DiskFull"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": alerts,
    }
