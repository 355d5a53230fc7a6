"""The demo's own checks (deploy/local/demo.py): its "no escalation" line is said only once the acknowledged
ticket's deadline, read from the demo's sla.yaml, has passed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from deploy.local.demo import CONFIG, acknowledge_deadline

SLA_YAML = """
contracts: {acme: gold}
policies:
  default: {acknowledge: {P1: 20s, P2: 30s}, escalation: [{after: 0s, team: owner}]}
  gold: {acknowledge: {P1: 5s, P2: 10s}, escalation: [{after: 0s, team: owner}]}
"""


def test_the_deadline_is_the_tickets_policy_target_after_it_opened() -> None:
    opened = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)
    ticket = {"policy": "default", "customer": None, "priority": "P2", "opened_at": opened.isoformat()}
    assert acknowledge_deadline(ticket, SLA_YAML) == opened + timedelta(seconds=30)


def test_a_customers_contract_picks_the_policy() -> None:
    opened = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)
    ticket = {"policy": "default", "customer": "acme", "priority": "P1", "opened_at": opened.isoformat()}
    assert acknowledge_deadline(ticket, SLA_YAML) == opened + timedelta(seconds=5)


def test_the_demos_own_sla_yaml_gives_a_deadline() -> None:
    opened = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)
    ticket = {"policy": "default", "customer": "acme", "priority": "P3", "opened_at": opened.isoformat()}
    assert acknowledge_deadline(ticket, (CONFIG / "sla.yaml").read_text()) > opened
