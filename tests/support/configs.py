"""Config directories for tests that start services as processes."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from deploy.local.kafka_local import free_port
from deploy.local.stack import Stack

AM_TOKEN = "test-alertmanager-token-0123456789"
GEN_TOKEN = "test-generic-token-0123456789abc"
API_TOKEN = "test-api-token-0123456789abcdef"
GRAFANA_TOKEN = "test-grafana-token-0123456789ab"
GRAFANA_KEY = "test-grafana-hmac-key-0123456789"
HOOK_SECRET = "test-webhook-secret"

SLA = """
policies:
  default:
    acknowledge: {P1: 8s, P2: 15s, P3: 1h, P4: 1h}
    escalation:
      - {after: 0s, team: owner}
"""


TEAMS = """
people:
  olga: {email: olga@example.test}
  oscar: {email: oscar@example.test}
teams:
  operations:
    members: [olga, oscar]
"""

ROUTING = """
route:
  team: operations
  routes:
    - name: web
      matchers: ['service="web"']
      team: web-team
"""


def write_config(
    root: Path,
    *,
    hook_port: int = 9,
    sla: str = SLA,
    projects: str = "projects: []\n",
    routing: str = ROUTING,
    teams: str = TEAMS,
    notify: str | None = None,
    integrations: str = "",
) -> Path:
    """The config directory; ``integrations``: more entries (YAML lines of intake.yaml's ``integrations`` list)."""
    cfg = root / "config"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "intake.yaml").write_text(
        f"""
integrations:
  - {{name: am, format: alertmanager, token: {AM_TOKEN}}}
  - {{name: portal, format: generic, token: {GEN_TOKEN}}}
  - {{name: grafana, format: grafana, token: {GRAFANA_TOKEN}}}
  - name: grafana-signed
    format: grafana
    token: {GRAFANA_TOKEN}
    signing_secret: {GRAFANA_KEY}
    signature_timestamp_header: X-Grafana-Alerting-Signature-Timestamp
{integrations}api_clients:
  - {{name: tests, token: {API_TOKEN}, acts_for: ["*"]}}
"""
    )
    (cfg / "routing.yaml").write_text(routing)
    (cfg / "teams.yaml").write_text(teams)
    (cfg / "sla.yaml").write_text(sla)
    (cfg / "projects.yaml").write_text(projects)
    (cfg / "notify.yaml").write_text(
        notify
        or f"""
teams:
  web-team:
    email: [web@example.test]
    channels:
      - {{type: webhook, name: web-chat, url: "http://127.0.0.1:{hook_port}/hooks/web", secret: {HOOK_SECRET}}}
  operations:
    email: [ops@example.test]
"""
    )
    return cfg


def intake_and_router(
    bootstrap: str,
    root: Path,
    integration: str | None,
    prefix: str,
    extra_env: dict[str, str] | None = None,
    projects: str = "projects: []\n",
    clients: Sequence[Mapping[str, object]] = (),
) -> Stack:
    """A stack over write_config's files with one more integration in intake.yaml (``integration``: one YAML flow
    mapping) and more API clients (``clients``), its intake and router started, on its own topic prefix."""
    config = write_config(root, projects=projects)
    intake_yaml = config / "intake.yaml"
    if integration is not None:
        intake_yaml.write_text(intake_yaml.read_text().replace("api_clients:", f"  - {integration}\napi_clients:"))
    # api_clients is the file's last list: each more client a line of it (JSON is YAML's flow style)
    intake_yaml.write_text(intake_yaml.read_text() + "".join(f"  - {json.dumps(c)}\n" for c in clients))
    stack = Stack(
        bootstrap,
        f"sqlite:///{root / 'db.sqlite'}",
        config,
        root / "logs",
        free_port(),
        9,
        extra_env={"TICKETLOOP_TOPIC_PREFIX": f"{prefix}-{time.time_ns()}.", **(extra_env or {})},
    )
    stack.start("intake")
    stack.start("router")
    return stack
