"""Every dashboard panel and every recording rule, run on a real Prometheus scraping the whole running loop.

The four services run as processes on the real broker (tests/support/loop.py); Debian's Prometheus scrapes them
every second with deploy/prometheus/prometheus.yml's jobs and the rule files. A short scenario moves tickets for
customer acme's project in hypercare (owned by web-team) and for an alert without a customer (operations): an
alert breaches its 3 s acknowledge target and is acknowledged late, another is acknowledged in time, both are
resolved within their 1 h resolve target, feedback and an unowned alert stay open, a second report is resolved and
its reporter answers the satisfaction survey (4 of 5), intake refuses three requests. The open feedback matches the
project's known issue and its reporter says the workaround solved it. Records no service can take are written to
Kafka beside the services' own (a value that is not JSON on the events and the tickets topics, a command for a
ticket that does not exist): each consumer dead-letters them. Then every consumer has caught up (its lag is 0).
Then each panel's query (template variables set to real values) and each recording rule's expression is run
through the HTTP API, and what it returns is checked against what the scenario did.

Waits are bounded polls for what a user would see (no timed asserts).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from deploy.grafana.build import files
from deploy.local.sinks import SmtpSink
from deploy.local.stack import Stack
from deploy.local.vendors.base import VendorSink
from shared.events import Action, Command
from shared.infra.actionlinks import issue, keys_from_setting
from shared.streaming.codec import encode
from shared.streaming.topics import Topics
from tests.support.configs import AM_TOKEN, API_TOKEN, GEN_TOKEN
from tests.support.kafka_io import produce
from tests.support.loop import alert, alertmanager_payload, running_loop
from tests.support.prometheus import RULE_FILES, Prometheus, running_prometheus, stack_config
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

SLA = """
policies:
  default:
    acknowledge: {P1: 3s, P2: 60s, P3: 1h, P4: 1h}
    resolve: {P1: 1h, P2: 1h, P3: 1h, P4: 1h}
    warnings: [0.5]
    escalation:
      - {after: 0s, team: owner}
      - {after: 1h, team: owner}  # A's clock runs on after its breach, so its late acknowledgement is counted
"""

PROJECTS = """
projects:
  - name: webshop
    customer: acme
    matchers: ['customer="acme"']
    go_live: {go_live}
    implementation: {team: web-team, engineers: [ian]}
    operations: {team: operations}
    known_issues:
      - id: WEB-1
        title: The invoice PDF is empty
        keywords: [invoice]
        workaround: Download the invoice from the order page.
"""

LIMITED_TOKEN = "test-limited-token-0123456789abcd"
LIMITED = f"  - {{name: limited, format: generic, token: {LIMITED_TOKEN}, rate_limit: {{requests: 1, per: 1h}}}}\n"

# What the template variables are set to (each must be among the values its own query finds).
VARIABLES = {"team": "web-team", "priority": "P1", "customer": "acme", "project": "webshop"}
# Grafana's interval macros: a window the whole scenario fits in, and a step.
MACROS = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "5s"}

# Queries (dashboard, panel title, refId) that the scenario legitimately leaves empty, and why.
MAY_BE_EMPTY = {
    ("ticketloop-ops", "Truncated alerts and unknown severities", "A"): "no sender left alerts out of a webhook",
    ("ticketloop-ops", "Truncated alerts and unknown severities", "B"): "every severity word is a built-in one",
    ("ticketloop-ops", "One-click action links", "A"): "the scenario acts through the API, not through links",
    ("ticketloop-ops", "Acknowledges and resolves without a ticket", "A"): "every acknowledge/resolve has a ticket",
    ("ticketloop-ops", "Failed deliveries over the range", "A"): "every notification is delivered",
    ("ticketloop-ops", "Waiting notifications and open circuits", "A"): "no lane holds a notification back",
    ("ticketloop-ops", "Waiting notifications and open circuits", "B"): "no target refuses notifications",
    ("ticketloop-ops", "Digests under rate limits", "A"): "no target is over its rate limit",
    ("ticketloop-ops", "Config reloads", "A"): "no config file changes while the stack runs",
    ("ticketloop-ops", "Config reloads", "B"): "no config file changes while the stack runs",
}
RULES_MAY_BE_EMPTY = {"ticketloop:notifier_deliveries_failed:increase15m": "every notification is delivered"}

# The records of each kind each service dead-letters in the scenario (every other kind is 0).
DEAD_LETTERS: dict[tuple[str, ...], float] = {
    ("router", "undecodable"): 1.0,
    ("router", "unknown_ticket"): 1.0,
    ("sla", "undecodable"): 1.0,
    ("notifier", "undecodable"): 1.0,
}
REASON_KINDS = ("undecodable", "unknown_ticket", "handling_failed", "delivery_given_up")


def substitute(expr: str) -> str:
    for macro, value in MACROS.items():
        expr = expr.replace(macro, value)
    for name, value in VARIABLES.items():
        expr = expr.replace(f"${name}", value)
    assert "$" not in expr, f"an unknown variable or macro in {expr}"
    return expr


def by(result: list[dict[str, Any]], *labels: str) -> dict[tuple[str, ...], float]:
    """``{(label values...): value}``; a label a series lacks is ''."""
    out = {tuple(r["metric"].get(label, "") for label in labels): float(r["value"][1]) for r in result}
    assert len(out) == len(result), f"series not told apart by {labels}: {result}"
    return out


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of a /metrics page (None: no such sample)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None


@pytest.fixture
def loop(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[Stack, SmtpSink, VendorSink]]:
    go_live = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    with running_loop(
        kafka_bootstrap, tmp_path, sla=SLA, projects=PROJECTS.replace("{go_live}", go_live), integrations=LIMITED
    ) as running:
        yield running


def topics(stack: Stack) -> Topics:
    return Topics(stack.env()["TICKETLOOP_TOPIC_PREFIX"], 1)  # names only


def consumed(stack: Stack) -> dict[tuple[str, str, str], str]:
    """(service, consumer group, topic) of every topic a worker consumes, and the topic's short name."""
    t, prefix = topics(stack), stack.env()["TICKETLOOP_TOPIC_PREFIX"]
    router = ("events", "grouped", "key_updates", "ticket_inputs", "commands")
    groups = {
        ("router", "router"): router,
        ("router", "router-project"): ("tickets", "escalations"),
        ("sla", "sla"): ("tickets", "sla_due"),
        ("notifier", "notifier"): ("tickets", "escalations", "handovers"),
    }
    return {
        (service, prefix + group, getattr(t, name).name): name
        for (service, group), names in groups.items()
        for name in names
    }


def lag_samples(text: str) -> dict[tuple[str, str, str], float]:
    return {
        (s.labels["service"], s.labels["group"], s.labels["topic"]): float(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "ticketloop_consumer_lag_records_count"
    }


def write_poison(stack: Stack) -> None:
    """Records no service can take, on the topics they consume, as a faulty producer would write them."""
    t = topics(stack)
    stray = Command(
        command_id="scenario-stray",
        ticket_id="tl-does-not-exist",
        action=Action.acknowledge,
        actor="ian",
        issued_at=datetime.now(UTC),
        trace_id="scenario-stray",
    )
    bootstrap = stack.bootstrap
    asyncio.run(produce(bootstrap, t.events.name, [("am/poison", b"{not json")]))  # the router: undecodable
    asyncio.run(produce(bootstrap, t.commands.name, [(stray.ticket_id, encode(stray))]))  # router: unknown ticket
    asyncio.run(produce(bootstrap, t.tickets.name, [("tl-poison", b"{not json")]))  # the sla and the notifier


def play_scenario(stack: Stack) -> list[dict[str, Any]]:
    """Moves the tickets (see the module docstring); returns the tickets once every worker has counted it all."""
    api = httpx.Client(base_url=stack.intake_url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)
    am = httpx.Client(base_url=stack.intake_url, headers={"Authorization": f"Bearer {AM_TOKEN}"}, timeout=10)
    acme = {"customer": "acme"}

    def tickets() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = api.get("/api/v1/tickets").json()["tickets"]
        return found

    def ticket(dedup_key: str) -> dict[str, Any] | None:
        return next((t for t in tickets() if t["dedup_key"] == dedup_key), None)

    def state(ticket_id: str) -> str:
        found: str = api.get(f"/api/v1/tickets/{ticket_id}").json()["state"]
        return found

    def metrics(service: str) -> str:
        url = stack.intake_url if service == "intake" else f"http://127.0.0.1:{stack.metrics_ports[service]}"
        return httpx.get(f"{url}/metrics", timeout=5).text

    # A (P1, acme) will breach; B (P2, acme) is acknowledged in time; D (P1, no customer, operations) breaches.
    firing = [
        alert("fp-a", "critical", labels=acme),
        alert("fp-b", "error", labels=acme),
        alert("fp-d", "critical", labels={"service": "db"}),
    ]
    assert am.post("/api/v1/integrations/am", json=alertmanager_payload("firing", firing)).status_code == 202
    feedback = {"summary": "Invoice PDF is empty", "kind": "feedback", "reporter": "ann@acme.example", "labels": acme}
    portal = {"Authorization": f"Bearer {GEN_TOKEN}"}
    assert (
        httpx.post(f"{stack.intake_url}/api/v1/integrations/portal", json=feedback, headers=portal).status_code == 202
    )
    a = wait_for("ticket A", lambda: ticket("am/fp-a"), stack=stack)
    b = wait_for("ticket B", lambda: ticket("am/fp-b"), stack=stack)
    d = wait_for("ticket D", lambda: ticket("am/fp-d"), stack=stack)
    assert (a["team"], a["priority"], b["team"], b["priority"]) == ("web-team", "P1", "web-team", "P2")
    assert (d["team"], d["priority"]) == ("operations", "P1")
    ack = api.post(f"/api/v1/tickets/{b['ticket_id']}/ack", json={"actor": "ian", "reason": "on it"})
    assert ack.status_code == 202, ack.text

    # intake refuses: a wrong token, a body it cannot take (which uses the limited sender's one request), then 429
    assert httpx.post(f"{stack.intake_url}/api/v1/integrations/portal", json=feedback).status_code == 401
    limited = {"Authorization": f"Bearer {LIMITED_TOKEN}"}
    url = f"{stack.intake_url}/api/v1/integrations/limited"
    assert httpx.post(url, json={"kind": "feedback"}, headers=limited).status_code == 422
    throttled = httpx.post(url, json=feedback, headers=limited)
    assert throttled.status_code == 429
    assert 0 < int(throttled.headers["retry-after"]) <= 3600, "when to try again, within the limit's hour"
    assert throttled.json()["error"] == (
        "rate limit of integration 'limited' reached: 1 requests per 3600 s (burst 1)"
    ), "which limit it ran into"

    # A's and D's acknowledge deadlines pass: breached and escalated; then A is acknowledged late and resolved
    def escalated(ticket_id: str) -> bool:
        return any(e["change"] == "escalated" for e in api.get(f"/api/v1/tickets/{ticket_id}").json()["timeline"])

    wait_for("A and D escalated", lambda: escalated(a["ticket_id"]) and escalated(d["ticket_id"]), stack=stack)
    ack = api.post(f"/api/v1/tickets/{a['ticket_id']}/ack", json={"actor": "ian", "reason": "late"})
    assert ack.status_code == 202, ack.text
    wait_for("A acknowledged", lambda: state(a["ticket_id"]) == "acknowledged", stack=stack)
    resolved = alertmanager_payload("resolved", [alert("fp-a", "critical", "resolved", labels=acme)])
    assert am.post("/api/v1/integrations/am", json=resolved).status_code == 202
    resolve = api.post(f"/api/v1/tickets/{b['ticket_id']}/resolve", json={"actor": "ian", "reason": "fixed"})
    assert resolve.status_code == 202, resolve.text
    wait_for("A and B resolved", lambda: state(a["ticket_id"]) == state(b["ticket_id"]) == "resolved", stack=stack)

    # a second report is resolved and its reporter answers the survey (a link signed as the notifier signs it)
    second = {**feedback, "summary": "Password reset mail comes late"}
    assert httpx.post(f"{stack.intake_url}/api/v1/integrations/portal", json=second, headers=portal).status_code == 202
    report = wait_for(
        "the second report", lambda: next((t for t in tickets() if t["summary"] == second["summary"]), None)
    )
    done = api.post(f"/api/v1/tickets/{report['ticket_id']}/resolve", json={"actor": "ian", "reason": "fixed"})
    assert done.status_code == 202, done.text
    wait_for("the feedback resolved", lambda: state(report["ticket_id"]) == "resolved", stack=stack)
    keys = keys_from_setting(stack.env()["TICKETLOOP_ACTION_LINK_KEYS"])
    token = issue(keys, report["ticket_id"], "survey", "ann@acme.example", datetime.now(UTC) + timedelta(days=7))
    answer = httpx.post(f"{stack.intake_url}/survey/{token}", data={"score": "4", "n": "scenario-0001"}, timeout=10)
    assert answer.status_code == 202, answer.text
    wait_for(
        "the answer in the satisfaction index",
        lambda: sample(
            metrics("intake"),
            "ticketloop_satisfaction_answers_count",
            customer="acme",
            project="webshop",
            team="web-team",
        ),
        stack=stack,
    )

    # the open feedback matched the project's known issue; its reporter says the workaround solved it
    invoice = next(t for t in tickets() if t["summary"] == feedback["summary"])
    assert invoice["known_issue"] == "WEB-1", invoice
    token = issue(keys, invoice["ticket_id"], "solved", "ann@acme.example", datetime.now(UTC) + timedelta(days=7))
    said = httpx.post(f"{stack.intake_url}/solved/{token}", data={"answer": "yes", "n": "scenario-0002"}, timeout=10)
    assert said.status_code == 202, said.text
    wait_for(
        "the answer in the known-issue figures",
        lambda: (
            sample(
                metrics("intake"),
                "ticketloop_knowledge_workaround_answers_count",
                project="webshop",
                known_issue="WEB-1",
                solved="yes",
            )
            == 1.0
        ),
        stack=stack,
    )

    # records no service can take: each consumer moves them to the deadletter topic and counts them
    write_poison(stack)
    dead = "ticketloop_deadletter_records_total"
    wait_for(
        "every dead letter counted",
        lambda: all(
            sample(metrics(service), dead, service=service, reason_kind=kind) == n
            for (service, kind), n in DEAD_LETTERS.items()
        ),
        stack=stack,
    )

    # every worker has counted it: the sla worker both resolutions, the notifier the resolution messages
    sla = "ticketloop_sla_resolved_total"
    wait_for(
        "the sla worker to count the three resolutions",
        lambda: (
            sample(
                metrics("sla"),
                sla,
                team="web-team",
                priority="P1",
                customer="acme",
                project="webshop",
                within_target="true",
            )
            == sample(
                metrics("sla"),
                sla,
                team="web-team",
                priority="P2",
                customer="acme",
                project="webshop",
                within_target="true",
            )
            == sample(
                metrics("sla"),
                sla,
                team="web-team",
                priority="P3",
                customer="acme",
                project="webshop",
                within_target="true",
            )
            == 1.0
        ),
        stack=stack,
    )
    wait_for(
        "the notifier to send the resolutions",
        lambda: (
            (
                sample(
                    metrics("notifier"),
                    "ticketloop_notifier_deliveries_total",
                    channel="email",
                    kind="resolution",
                    status="sent",
                )
                or 0
            )
            >= 2
        ),
        stack=stack,
    )
    # and every consumer has caught up: each reports every topic it reads, 0 behind
    want = consumed(stack)
    wait_for(
        "every consumer 0 behind on every topic it reads",
        lambda: all(
            {k: v for k, v in lag_samples(metrics(service)).items() if k[0] == service}
            == {k: 0.0 for k in want if k[0] == service}
            for service in ("router", "sla", "notifier")
        ),
        stack=stack,
    )
    return tickets()


def check_panel(key: tuple[str, str, str], result: list[dict[str, Any]], facts: dict[str, Any]) -> None:
    """The exact figures the scenario makes, for the panels that show them."""
    backlog: Counter[tuple[str, str]] = facts["web_team_backlog"]
    day = 86400.0
    expected: dict[tuple[str, str, str], Callable[[], None]] = {
        ("ticketloop-customers", "Project phase", "A"): lambda: _eq(
            by(result, "customer", "project", "phase"), {("acme", "webshop", "hypercare"): 1.0}
        ),
        ("ticketloop-customers", "Hypercare left", "A"): lambda: _between(  # went live a day ago, 30 days of it
            by(result, "customer", "project"), {("acme", "webshop")}, 28 * day, 29 * day
        ),
        ("ticketloop-customers", "Backlog by customer and project", "A"): lambda: _eq(
            by(result, "customer", "project", "state"), {k: float(v) for k, v in facts["acme_backlog"].items()}
        ),
        ("ticketloop-customers", "MTTA by customer and project", "A"): lambda: _between(
            by(result, "customer", "project"), {("acme", "webshop")}, 0.0, facts["elapsed_s"]
        ),
        ("ticketloop-customers", "MTTR by customer and project", "A"): lambda: _between(
            by(result, "customer", "project"), {("acme", "webshop")}, 0.0, facts["elapsed_s"]
        ),
        ("ticketloop-customers", "Acknowledge compliance by project", "A"): lambda: _eq(
            by(result, "customer", "project"),
            {("acme", "webshop"): 0.5},  # A late, B in time
        ),
        ("ticketloop-customers", "Resolve compliance by project", "A"): lambda: _eq(
            by(result, "customer", "project"), {("acme", "webshop"): 1.0}
        ),
        ("ticketloop-customers", "Reports answered with a known issue's workaround", "A"): lambda: _eq(
            by(result, "project", "known_issue"), {("webshop", "WEB-1"): 1.0}
        ),
        ("ticketloop-customers", "Did the workaround solve it?", "A"): lambda: _eq(
            by(result, "project", "known_issue", "solved"),
            {("webshop", "WEB-1", "yes"): 1.0, ("webshop", "WEB-1", "no"): 0.0},
        ),
        ("ticketloop-ops", "Consumer lag by service and topic", "A"): lambda: _eq(
            by(result, "service", "topic"), {(service, topic): 0.0 for service, _, topic in facts["consumed"]}
        ),
        ("ticketloop-ops", "Since each consumer's last poll", "A"): lambda: _between(
            by(result, "service", "group"), {(service, group) for service, group, _ in facts["consumed"]}, -1.0, 60.0
        ),
        ("ticketloop-ops", "Dead letters per hour", "A"): lambda: _eq(
            by(result, "service", "reason_kind"), every_dead_letter_kind()
        ),
        ("ticketloop-ops", "Dead letters over the range", "A"): lambda: _eq(
            by(result, "service", "reason_kind"), DEAD_LETTERS
        ),
        ("ticketloop-sla", "Acknowledge compliance", "A"): lambda: _eq(by(result), {(): 0.0}),  # P1: A was late
        ("ticketloop-sla", "Resolve compliance", "A"): lambda: _eq(by(result), {(): 1.0}),
        ("ticketloop-sla", "Unresolved tickets by state and team", "A"): lambda: _eq(
            by(result, "state", "team"), {k: float(v) for k, v in backlog.items()}
        ),
        ("ticketloop-sla", "Breaches by team and priority", "A"): lambda: _eq(
            by(result, "team", "priority"), {("web-team", "P1"): 1.0}
        ),
        ("ticketloop-sla", "Breaches by customer", "A"): lambda: _eq(by(result, "customer"), {("acme",): 1.0}),
        ("ticketloop-sla", "Breaches by clock", "A"): lambda: _eq(by(result, "clock"), {("acknowledge",): 1.0}),
        ("ticketloop-sla", "Warnings and escalations", "A"): lambda: _eq(by(result, "team"), {("web-team",): 1.0}),
        ("ticketloop-sla", "Warnings and escalations", "B"): lambda: _eq(
            by(result, "team", "level"), {("web-team", "1"): 1.0}
        ),
        ("ticketloop-customers", "Acknowledge compliance by customer", "A"): lambda: _eq(
            by(result, "customer"), {("acme",): 0.5}
        ),
        ("ticketloop-customers", "Resolve compliance by customer", "A"): lambda: _eq(
            by(result, "customer"), {("acme",): 1.0}
        ),
        ("ticketloop-customers", "Acknowledged and resolved by customer", "A"): lambda: _eq(
            by(result, "customer", "within_target"), {("acme", "true"): 1.0, ("acme", "false"): 1.0}
        ),
        ("ticketloop-customers", "Acknowledged and resolved by customer", "B"): lambda: _eq(
            by(result, "customer", "within_target"),
            {("acme", "true"): 3.0},  # A, B and the second report
        ),
        ("ticketloop-customers", "Satisfaction index by customer and project", "A"): lambda: _eq(
            by(result, "customer", "project"), {("acme", "webshop"): 1.0}
        ),
        ("ticketloop-customers", "Survey answers by customer and project", "A"): lambda: _eq(
            by(result, "customer", "project"), {("acme", "webshop"): 1.0}
        ),
        ("ticketloop-customers", "Breaches by customer and clock", "A"): lambda: _eq(
            by(result, "customer", "clock"), {("acme", "acknowledge"): 1.0}
        ),
        ("ticketloop-customers", "Warnings by customer", "A"): lambda: _eq(
            by(result, "customer", "clock"), {("acme", "acknowledge"): 1.0}
        ),
        ("ticketloop-customers", "Escalations by customer and level", "A"): lambda: _eq(
            by(result, "customer", "level", "team"), {("acme", "1", "web-team"): 1.0}
        ),
        ("ticketloop-customers", "Breaches per hour by customer", "A"): lambda: _eq(
            by(result, "customer"), {("acme",): 1.0}
        ),
        ("ticketloop-customers", "Backlog: unresolved tickets by team and state", "A"): lambda: _eq(
            by(result, "state", "team"), {k: float(v) for k, v in backlog.items()}
        ),
        ("ticketloop-customers", "MTTA: mean time to acknowledge by team", "A"): lambda: _between(
            by(result, "team"), {("web-team",)}, 0.0, facts["elapsed_s"]
        ),
        ("ticketloop-customers", "MTTR: mean time to resolve by team", "A"): lambda: _between(
            by(result, "team"), {("web-team",)}, 0.0, facts["elapsed_s"]
        ),
        ("ticketloop-ops", "Services up", "A"): lambda: _eq(
            by(result, "job", "instance"), dict.fromkeys(facts["targets"], 1.0)
        ),
        ("ticketloop-ops", "Rejections over the range", "A"): lambda: _eq(
            by(result, "reason"), {("unauthorized",): 1.0, ("invalid",): 1.0, ("rate_limited",): 1.0}
        ),
        ("ticketloop-ops", "Events accepted by integration", "A"): lambda: _has(
            by(result, "integration"), {("am",), ("portal",)}
        ),
        ("ticketloop-ops", "Ticket changes by change", "A"): lambda: _has(
            by(result, "change"), {("opened",), ("acknowledged",), ("resolved",)}
        ),
        ("ticketloop-ops", "Deliveries by status", "A"): lambda: _has(by(result, "status"), {("sent",)}),
    }
    if key in expected:
        expected[key]()


def every_dead_letter_kind() -> dict[tuple[str, ...], float]:
    """Each worker's count of each kind (every kind from 0), as the scenario leaves them."""
    return {
        (service, kind): DEAD_LETTERS.get((service, kind), 0.0)
        for service in ("router", "sla", "notifier")
        for kind in REASON_KINDS
    }


def _eq(got: dict[tuple[str, ...], float], want: dict[tuple[str, ...], float]) -> None:
    assert got.keys() == want.keys() and all(math.isclose(got[k], want[k], abs_tol=1e-9) for k in want), (got, want)


def _has(got: dict[tuple[str, ...], float], keys: set[tuple[str, ...]]) -> None:
    assert keys <= got.keys(), (got, keys)


def _between(got: dict[tuple[str, ...], float], keys: set[tuple[str, ...]], low: float, high: float) -> None:
    assert got.keys() == keys and all(low < v <= high for v in got.values()), (got, low, high)


def test_every_panel_and_recording_rule_on_a_real_prometheus(
    loop: tuple[Stack, SmtpSink, VendorSink], tmp_path: Path
) -> None:
    stack, _, _ = loop
    started = datetime.now(UTC)
    with running_prometheus(stack_config(stack), tmp_path / "prometheus") as prom:
        # its targets come up a few seconds after it is ready: the scenario's first counts must be seen rising
        wait_for("a first scrape of every target", lambda: prom.scraped_all_after(started.timestamp()), stack=stack)
        tickets = play_scenario(stack)
        done = datetime.now(UTC).timestamp()
        wait_for("a scrape of every target after the scenario", lambda: prom.scraped_all_after(done), stack=stack)
        scraped = datetime.now(UTC).timestamp()
        wait_for("every rule group evaluated after that scrape", lambda: prom.evaluated_all_after(scraped), stack=stack)

        facts: dict[str, Any] = {
            "web_team_backlog": Counter(
                (t["state"], t["team"])
                for t in tickets
                if t["state"] in ("open", "acknowledged") and t["team"] == "web-team"
            ),
            "acme_backlog": Counter(
                (t["customer"], t["project"], t["state"])
                for t in tickets
                if t["state"] in ("open", "acknowledged") and t["customer"] == "acme"
            ),
            "consumed": consumed(stack),
            "elapsed_s": (datetime.now(UTC) - started).total_seconds(),
            "targets": {("ticketloop-intake", f"127.0.0.1:{stack.intake_port}")}
            | {("ticketloop-workers", f"127.0.0.1:{stack.metrics_ports[s]}") for s in ("router", "sla", "notifier")},
        }
        assert facts["web_team_backlog"], "the feedback ticket stays open with web-team (the project is in hypercare)"
        assert facts["acme_backlog"] == {("acme", "webshop", "open"): 1}, "the invoice report stays open"
        check_dashboards(prom, facts)
        check_rules(prom, facts)


def check_dashboards(prom: Prometheus, facts: dict[str, Any]) -> None:
    checked = 0
    for name, text in files().items():
        board = json.loads(text)
        uid = board["uid"]
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                metric, label = variable["query"].removeprefix("label_values(").removesuffix(")").split(", ")
                values = prom.api(f"label/{label}/values", **{"match[]": metric})
                assert VARIABLES[variable["name"]] in values, f"{name}: ${variable['name']} offers {values}"
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                key = (uid, panel["title"], target["refId"])
                result = prom.query(substitute(target["expr"]))
                checked += 1
                assert result or key in MAY_BE_EMPTY, f"{key} is empty: {substitute(target['expr'])}"
                values = [float(r["value"][1]) for r in result]
                assert all(math.isfinite(v) and v >= 0 for v in values), (key, result)
                if panel.get("fieldConfig", {}).get("defaults", {}).get("unit") == "percentunit":
                    assert all(v <= 1 for v in values), (key, result)
                check_panel(key, result, facts)
    panels = {
        (json.loads(t)["uid"], p["title"], q["refId"])
        for t in files().values()
        for p in json.loads(t)["panels"]
        for q in p.get("targets", [])
    }
    assert set(MAY_BE_EMPTY) <= panels, f"MAY_BE_EMPTY names panels no dashboard has: {set(MAY_BE_EMPTY) - panels}"
    assert checked == len(panels)


def check_rules(prom: Prometheus, facts: dict[str, Any]) -> None:
    records = [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    ]
    want: dict[str, Callable[[list[dict[str, Any]]], None]] = {
        "ticketloop:sla_acknowledged:increase1h": lambda r: _eq(
            by(r, "team", "customer", "within_target"),
            {("web-team", "acme", "true"): 1.0, ("web-team", "acme", "false"): 1.0},
        ),
        "ticketloop:sla_resolved:increase1h": lambda r: _eq(
            by(r, "team", "customer", "within_target"), {("web-team", "acme", "true"): 3.0}
        ),
        "ticketloop:sla_compliance:ratio_rate1h": lambda r: _eq(by(r, "team", "customer"), {("web-team", "acme"): 0.5}),
        "ticketloop:sla_resolve_compliance:ratio_rate1h": lambda r: _eq(
            by(r, "team", "customer"), {("web-team", "acme"): 1.0}
        ),
        "ticketloop:sla_breaches:increase1h": lambda r: _eq(
            by(r, "team", "customer", "clock"),
            {("web-team", "acme", "acknowledge"): 1.0, ("operations", "", "acknowledge"): 1.0},
        ),
        "ticketloop:sla_timer_lateness_seconds:p99_rate5m": lambda r: _between(by(r), {()}, 0.0, 60.0),
        "ticketloop:intake_requests_rejected:increase5m": lambda r: _eq(
            by(r, "reason"), {("unauthorized",): 1.0, ("invalid",): 1.0, ("rate_limited",): 1.0}
        ),
        "ticketloop:consumer_lag_records:sum": lambda r: _eq(
            by(r, "service", "group", "topic"), dict.fromkeys(facts["consumed"], 0.0)
        ),
        "ticketloop:deadletter_records:increase15m": lambda r: _eq(
            by(r, "service", "reason_kind"), every_dead_letter_kind()
        ),
    }
    assert {r["record"] for r in records} == set(want) | set(RULES_MAY_BE_EMPTY), "a recording rule without a check"
    for rule in records:
        result = prom.query(rule["expr"])
        recorded = prom.query(rule["record"])
        if rule["record"] in RULES_MAY_BE_EMPTY:
            assert not result and not recorded, (rule["record"], result, recorded)
            continue
        assert result, f"{rule['record']} is empty"
        want[rule["record"]](result)
        want[rule["record"]](recorded)  # Prometheus evaluated the rule itself, to the same figures
    groups = prom.api("rules")["groups"]
    unhealthy = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"]
    assert unhealthy == []
    firing = {
        (a["labels"]["alertname"], a["labels"].get("service", ""), a["labels"].get("reason_kind", ""))
        for a in prom.api("alerts")["alerts"]
        if a["state"] == "firing"
    }
    assert firing == {("TicketloopDeadLetters", service, kind) for service, kind in DEAD_LETTERS}, (
        "the dead letters alert, each worker's kind apart; a stack whose other figures are below every threshold "
        "fires nothing else"
    )
