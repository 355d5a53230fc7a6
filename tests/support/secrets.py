"""Every secret the test suite configures into a running service (tokens, signing keys, webhook URLs' secret
parts, action link keys), and a check that no service's log of a whole test run holds any of them (issue 15:
no secret in any log line). The session fixture in tests/conftest.py runs the check after every run that
started services (the e2e and integration stacks write ``intake.log``, ``router.log``, ... under pytest's
temporary directory)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

SERVICE_LOGS = frozenset({"intake.log", "router.log", "sla.log", "notifier.log"})


def configured_secrets() -> dict[str, str]:
    """Name → value of every secret the suite hands to services (imported here, where they are defined)."""
    from deploy.local.vendors import lab
    from tests.e2e import test_dashboards_prometheus, test_heartbeats, test_opsgenie_alerts, test_pagerduty_events
    from tests.integration import test_intake_fuzz_broker
    from tests.support import chatlab, configs

    found = {
        "alertmanager token": configs.AM_TOKEN,
        "generic token": configs.GEN_TOKEN,
        "api token": configs.API_TOKEN,
        "grafana token": configs.GRAFANA_TOKEN,
        "grafana hmac key": configs.GRAFANA_KEY,
        "webhook signing secret": configs.HOOK_SECRET,
        "action link key (chat lab)": chatlab.LINK_KEY,
        "slack signing secret": chatlab.SLACK_SIGNING_SECRET,
        "action link key (local stack)": "local-stack-action-link-key-0001",
        "slack bot token": lab.SLACK_TOKEN,
        "slack incoming webhook path": lab.SLACK_HOOK,
        "dingtalk access token": lab.DINGTALK_TOKEN,
        "dingtalk signing secret": lab.DINGTALK_SECRET,
        "wecom key": lab.WECOM_KEY,
        "feishu hook token": lab.FEISHU_TOKEN,
        "feishu signing secret": lab.FEISHU_SECRET,
        "teams workflow path": lab.TEAMS_PATH,
        "pagerduty routing key": test_pagerduty_events.ROUTING_KEY,
        "opsgenie key": test_opsgenie_alerts.GENIE_KEY,
        "heartbeat token": test_heartbeats.CRON_TOKEN,
        "rate-limited integration token": test_dashboards_prometheus.LIMITED_TOKEN,
        "fuzzed integrations' token": test_intake_fuzz_broker.TOKEN,
    }
    found.update({f"webhook secret ({team})": secret for team, secret in lab.WEBHOOK_SECRETS.items()})
    return found


def leaks(logs: Iterable[Path], secrets: Mapping[str, str]) -> list[tuple[str, str]]:
    """(secret's name, log file) for every secret found in a service log."""
    found = []
    for path in logs:
        text = path.read_text(errors="replace")
        found += [(name, str(path)) for name, secret in secrets.items() if secret in text]
    return found


def service_logs(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.log") if p.name in SERVICE_LOGS)
