"""Grafana dashboards as code: ``python -m deploy.grafana.build`` writes deploy/grafana/dashboards/*.json.

The committed JSON is generated: edit the panels here, run the module, commit both (tests/unit/test_dashboards.py
fails when the files differ from what this module builds, and when a panel queries a metric no service exposes).

Three dashboards, one set for both teams:
- ``ticketloop-sla``: the SLA view (compliance, backlog, breaches, warnings and escalations, response times);
- ``ticketloop-customers``: per customer (compliance, breaches, warnings, escalations), per project (hypercare
  status, backlog, mean time to acknowledge and to resolve, compliance, known-issue hits) and by team;
- ``ticketloop-ops``: ticketloop itself (services up, consumer lag and dead letters, intake, router, sla timers,
  notifier deliveries).

Panels are declared as plain data (``Panel``, ``Row``) in one function per dashboard row; the Grafana JSON is made
by grafana-foundation-sdk (Grafana's own typed builders, a dev dependency: it is needed only to regenerate).
Every query is PromQL over the services' own metrics; template variables exist only where the label does
(``customer`` on the SLA counters, ``project`` on the project status and the per-project figures, ``team``,
``priority``).

Counting in a window: a labelled counter appears at its first event with the value 1, so ``increase()`` over a
window misses that first event (a customer's only breach would count 0). ``counted`` adds a series that did not
exist at the window's start with its whole value, and takes ``increase()`` for the others.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from grafana_foundation_sdk.builders import bargauge, stat, text, timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, DatasourceVariable, QueryVariable
from grafana_foundation_sdk.builders.dashboard import Row as RowBuilder
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import BigValueTextMode
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableOption, VariableRefresh

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")

Kind = Literal["stat", "timeseries", "bargauge", "text"]


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str
    instant: bool = False
    """Asked at the range's end only (what a figure "now" is), not over the range: a series that ended inside
    the range (a project's earlier phase) is not shown as if it were current."""


@dataclass(frozen=True)
class Panel:
    title: str
    kind: Kind
    queries: tuple[Query, ...] = ()
    unit: str = ""
    description: str = ""
    width: int = 12
    height: int = 8
    content: str = ""
    """Markdown, for text panels."""
    text_mode: BigValueTextMode | None = None
    """For stat panels: what each series shows (NAME: its legend only, for a series whose value says nothing)."""


@dataclass(frozen=True)
class Row:
    """A titled row of panels; an untitled one is laid out without a row header (the SLA view)."""

    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Variable:
    name: str
    query: str
    """``label_values(metric, label)``"""


@dataclass(frozen=True)
class Spec:
    uid: str
    title: str
    variables: tuple[Variable, ...]
    rows: tuple[Row, ...]
    description: str = ""


# --- PromQL helpers -------------------------------------------------------------------------------------------------


def counted(selector: str, window: str, by: Sequence[str] = ()) -> str:
    """How many events a counter (or a histogram's _count/_sum) counted in ``window``, summed ``by`` labels; a series
    born inside the window counts from zero (its first event is not lost as with a bare ``increase()``)."""
    grouping = f" by ({', '.join(by)})" if by else ""
    return f"sum{grouping} ((increase({selector}[{window}]) and {selector} offset {window}) or {selector})"


def share(part: str, whole: str) -> str:
    """``part / whole`` that is 0, not missing, where ``whole`` has series and ``part`` has none."""
    return f"({part} or {whole} * 0) / {whole}"


def quantile(q: float, metric: str, window: str, by: Sequence[str], matchers: str = "") -> str:
    labels = ", ".join(["le", *by])
    selector = f"{metric}_bucket{{{matchers}}}" if matchers else f"{metric}_bucket"
    return f"histogram_quantile({q}, sum by ({labels}) (rate({selector}[{window}])))"


def counted_quantile(q: float, metric: str, window: str, by: Sequence[str], matchers: str) -> str:
    """A quantile of a labelled histogram's observations in ``window``: its buckets ``counted`` (a (team, priority)'s
    first observation would otherwise be lost, and with a single one the quantile would be empty)."""
    return f"histogram_quantile({q}, {counted(f'{metric}_bucket{{{matchers}}}', window, ['le', *by])})"


def q(expr: str, legend: str, *, instant: bool = False) -> Query:
    return Query(expr, legend, instant)


# --- the SLA view ---------------------------------------------------------------------------------------------------

SLA_FILTER = 'team=~"$team", priority=~"$priority"'


def sla_panels() -> tuple[Panel, ...]:
    ack = f"ticketloop_sla_acknowledged_total{{{SLA_FILTER}}}"
    ack_in = f'ticketloop_sla_acknowledged_total{{{SLA_FILTER}, within_target="true"}}'
    res = f"ticketloop_sla_resolved_total{{{SLA_FILTER}}}"
    res_in = f'ticketloop_sla_resolved_total{{{SLA_FILTER}, within_target="true"}}'
    breaches = f"ticketloop_sla_breaches_total{{{SLA_FILTER}}}"
    return (
        Panel(
            "Acknowledge compliance",
            "stat",
            (q(share(counted(ack_in, "$__range"), counted(ack, "$__range")), "compliance"),),
            unit="percentunit",
            description="Acknowledgements that met the policy's target, over the dashboard's range",
            width=6,
        ),
        Panel(
            "Unresolved tickets by state and team",
            "bargauge",
            (q('sum by (state, team) (ticketloop_tickets_unresolved_count{team=~"$team"})', "{{team}} {{state}}"),),
            width=6,
        ),
        Panel(
            "Breaches by team and priority",
            "timeseries",
            (q(counted(breaches, "1h", ["team", "priority"]), "{{team}} {{priority}}"),),
        ),
        Panel(
            "Breaches by customer",
            "timeseries",
            (q(counted(breaches, "1h", ["customer"]), "{{customer}}"),),
        ),
        Panel(
            "Warnings and escalations",
            "timeseries",
            (
                q(
                    counted(f"ticketloop_sla_warnings_total{{{SLA_FILTER}}}", "1h", ["team"]),
                    "warnings {{team}}",
                ),
                q(
                    counted(f"ticketloop_sla_escalations_total{{{SLA_FILTER}}}", "1h", ["team", "level"]),
                    "level {{level}} to {{team}}",
                ),
            ),
        ),
        Panel(
            "Time to acknowledge (p50, p90)",
            "timeseries",
            tuple(
                q(
                    counted_quantile(p, "ticketloop_sla_time_to_acknowledge_seconds", "1h", ["team"], SLA_FILTER),
                    f"{n} {{{{team}}}}",
                )
                for p, n in ((0.5, "p50"), (0.9, "p90"))
            ),
            unit="s",
        ),
        Panel(
            "Time to resolve (p50, p90)",
            "timeseries",
            tuple(
                q(
                    counted_quantile(p, "ticketloop_sla_time_to_resolve_seconds", "6h", ["team"], SLA_FILTER),
                    f"{n} {{{{team}}}}",
                )
                for p, n in ((0.5, "p50"), (0.9, "p90"))
            ),
            unit="s",
        ),
        Panel(
            "SLA timer lateness (p99)",
            "timeseries",
            (q(quantile(0.99, "ticketloop_sla_timer_lateness_seconds", "5m", []), "p99"),),
            unit="s",
            description="How late warnings, breaches and escalations fired after their due time",
        ),
        Panel(
            "Notifications by outcome",
            "timeseries",
            (
                q(
                    counted("ticketloop_notifier_deliveries_total", "1h", ["channel", "status"]),
                    "{{channel}} {{status}}",
                ),
            ),
        ),
        Panel(
            "Resolve compliance",
            "stat",
            (q(share(counted(res_in, "$__range"), counted(res, "$__range")), "compliance"),),
            unit="percentunit",
            description=(
                "Resolutions that met the policy's resolve target (tickets with one), over the dashboard's range"
            ),
            width=6,
        ),
        Panel(
            "Breaches by clock",
            "timeseries",
            (q(counted(breaches, "1h", ["clock"]), "{{clock}}"),),
            description="Deadlines passed per hour: acknowledge, resolve, first response, update interval",
            width=18,
        ),
    )


def sla_dashboard() -> Spec:
    return Spec(
        uid="ticketloop-sla",
        title="ticketloop SLA",
        variables=(
            Variable("team", "label_values(ticketloop_sla_acknowledged_total, team)"),
            Variable("priority", "label_values(ticketloop_sla_acknowledged_total, priority)"),
        ),
        rows=(Row("", sla_panels()),),
    )


# --- per customer ---------------------------------------------------------------------------------------------------

CUSTOMER = 'customer=~"$customer"'


def customer_compliance_panels() -> tuple[Panel, ...]:
    """The per-customer row of compliance figures: a new per-customer panel (e.g. the satisfaction index, once its
    metric exists) is one more ``Panel(...)`` line here."""
    ack = f"ticketloop_sla_acknowledged_total{{{CUSTOMER}}}"
    ack_in = f'ticketloop_sla_acknowledged_total{{{CUSTOMER}, within_target="true"}}'
    res = f"ticketloop_sla_resolved_total{{{CUSTOMER}}}"
    res_in = f'ticketloop_sla_resolved_total{{{CUSTOMER}, within_target="true"}}'
    by = ["customer"]
    return (
        Panel(
            "Acknowledge compliance by customer",
            "bargauge",
            (q(share(counted(ack_in, "$__range", by), counted(ack, "$__range", by)), "{{customer}}"),),
            unit="percentunit",
            description="Acknowledgements within the policy's target / all acknowledgements, over the range",
            width=8,
        ),
        Panel(
            "Resolve compliance by customer",
            "bargauge",
            (q(share(counted(res_in, "$__range", by), counted(res, "$__range", by)), "{{customer}}"),),
            unit="percentunit",
            description="Resolutions within the resolve target / all resolutions against one, over the range",
            width=8,
        ),
        Panel(
            "Acknowledged and resolved by customer",
            "bargauge",
            (
                q(
                    counted(ack, "$__range", ["customer", "within_target"]),
                    "{{customer}} acknowledged, in time: {{within_target}}",
                ),
                q(
                    counted(res, "$__range", ["customer", "within_target"]),
                    "{{customer}} resolved, in time: {{within_target}}",
                ),
            ),
            description="Tickets acknowledged and resolved over the range, by whether they met the target",
            width=8,
        ),
        Panel(
            "Satisfaction index by customer and project",
            "bargauge",
            (
                q(
                    f"sum by (customer, project) (ticketloop_satisfaction_index_ratio{{{CUSTOMER}}} * "
                    f"ticketloop_satisfaction_answers_count{{{CUSTOMER}}}) / sum by (customer, project) "
                    f"(ticketloop_satisfaction_answers_count{{{CUSTOMER}}})",
                    "{{customer}} {{project}}",
                ),
            ),
            unit="percentunit",
            description="Share of survey answers of the last 90 days that are 4 or 5 (the goal is in projects.yaml)",
            width=12,
        ),
        Panel(
            "Survey answers by customer and project",
            "bargauge",
            (
                q(
                    f"sum by (customer, project) (ticketloop_satisfaction_answers_count{{{CUSTOMER}}})",
                    "{{customer}} {{project}}",
                ),
            ),
            description="Satisfaction survey answers of the last 90 days (one per resolved report, the newest)",
            width=12,
        ),
    )


def customer_deadline_panels() -> tuple[Panel, ...]:
    return (
        Panel(
            "Breaches by customer and clock",
            "bargauge",
            (
                q(
                    counted(f"ticketloop_sla_breaches_total{{{CUSTOMER}}}", "$__range", ["customer", "clock"]),
                    "{{customer}} {{clock}}",
                ),
            ),
            description="Deadlines passed over the range: acknowledge, resolve, first response, update interval",
            width=8,
        ),
        Panel(
            "Warnings by customer",
            "bargauge",
            (
                q(
                    counted(f"ticketloop_sla_warnings_total{{{CUSTOMER}}}", "$__range", ["customer", "clock"]),
                    "{{customer}} {{clock}}",
                ),
            ),
            description="Reminders sent to the owner before a deadline, over the range",
            width=8,
        ),
        Panel(
            "Escalations by customer and level",
            "bargauge",
            (
                q(
                    counted(
                        f"ticketloop_sla_escalations_total{{{CUSTOMER}}}", "$__range", ["customer", "level", "team"]
                    ),
                    "{{customer}} level {{level}} to {{team}}",
                ),
            ),
            width=8,
        ),
        Panel(
            "Breaches per hour by customer",
            "timeseries",
            (q(counted(f"ticketloop_sla_breaches_total{{{CUSTOMER}}}", "1h", ["customer"]), "{{customer}}"),),
            width=24,
        ),
    )


def team_mean(metric: str) -> str:
    """Mean seconds of a histogram over the range, by team."""
    selector = '{team=~"$team"}'
    total = counted(f"{metric}_sum{selector}", "$__range", ["team"])
    return f"{total} / {counted(f'{metric}_count{selector}', '$__range', ['team'])}"


def customer_team_panels() -> tuple[Panel, ...]:
    return (
        Panel(
            "Backlog: unresolved tickets by team and state",
            "bargauge",
            (q('sum by (team, state) (ticketloop_tickets_unresolved_count{team=~"$team"})', "{{team}} {{state}}"),),
            description="Open and acknowledged tickets now, counted in the read model (by team: no customer label)",
            width=8,
        ),
        Panel(
            "MTTA: mean time to acknowledge by team",
            "bargauge",
            (q(team_mean("ticketloop_sla_time_to_acknowledge_seconds"), "{{team}}"),),
            unit="s",
            description="From the acknowledge clock's start to the acknowledgement, over the range (by team)",
            width=8,
        ),
        Panel(
            "MTTR: mean time to resolve by team",
            "bargauge",
            (q(team_mean("ticketloop_sla_time_to_resolve_seconds"), "{{team}}"),),
            unit="s",
            description="From opening to resolution, over the range (by team)",
            width=8,
        ),
    )


PROJECT = 'customer=~"$customer", project=~"$project"'


def project_status_panels() -> tuple[Panel, ...]:
    """Each project's hypercare status (from projects.yaml, as the router holds it) and its backlog now."""
    phase = f"ticketloop_project_phase_info{{{PROJECT}}}"
    ends = f"max by (customer, project) (ticketloop_project_hypercare_ends_timestamp_seconds{{{PROJECT}}})"
    return (
        Panel(
            "Project phase",
            "stat",
            (q(f"max by (customer, project, phase) ({phase})", "{{customer}} {{project}}: {{phase}}", instant=True),),
            description="Each project's phase now: pre-go-live, hypercare (the implementation engineer owns its "
            "tickets, operations watches) or operations",
            width=8,
            text_mode=BigValueTextMode.NAME,
        ),
        Panel(
            "Hypercare left",
            "bargauge",
            (
                q(
                    f"clamp_min({ends} - time(), 0) and on (customer, project) "
                    f'max by (customer, project) (ticketloop_project_phase_info{{{PROJECT}, phase="hypercare"}})',
                    "{{customer}} {{project}}",
                    instant=True,
                ),
            ),
            unit="s",
            description="Time until operations takes over, for the projects in hypercare",
            width=8,
        ),
        Panel(
            "Backlog by customer and project",
            "bargauge",
            (
                q(
                    f"sum by (customer, project, state) (ticketloop_tickets_unresolved_count{{{PROJECT}}})",
                    "{{customer}} {{project}} {{state}}",
                ),
            ),
            description="Open and acknowledged tickets now, counted in the read model (a ticket outside any "
            "project has an empty customer and project)",
            width=8,
        ),
    )


def project_mean(metric: str) -> str:
    """Mean seconds of a histogram over the range, by customer and project."""
    by = ["customer", "project"]
    total = counted(f"{metric}_sum{{{PROJECT}}}", "$__range", by)
    return f"{total} / {counted(f'{metric}_count{{{PROJECT}}}', '$__range', by)}"


def project_response_panels() -> tuple[Panel, ...]:
    ack = f"ticketloop_sla_acknowledged_total{{{PROJECT}}}"
    ack_in = f'ticketloop_sla_acknowledged_total{{{PROJECT}, within_target="true"}}'
    res = f"ticketloop_sla_resolved_total{{{PROJECT}}}"
    res_in = f'ticketloop_sla_resolved_total{{{PROJECT}, within_target="true"}}'
    by = ["customer", "project"]
    return (
        Panel(
            "MTTA by customer and project",
            "bargauge",
            (q(project_mean("ticketloop_sla_time_to_acknowledge_seconds"), "{{customer}} {{project}}"),),
            unit="s",
            description="Mean time from the acknowledge clock's start to the acknowledgement, over the range",
            width=6,
        ),
        Panel(
            "MTTR by customer and project",
            "bargauge",
            (q(project_mean("ticketloop_sla_time_to_resolve_seconds"), "{{customer}} {{project}}"),),
            unit="s",
            description="Mean time from opening to resolution, over the range",
            width=6,
        ),
        Panel(
            "Acknowledge compliance by project",
            "bargauge",
            (q(share(counted(ack_in, "$__range", by), counted(ack, "$__range", by)), "{{customer}} {{project}}"),),
            unit="percentunit",
            description="Acknowledgements within the policy's target / all acknowledgements, over the range",
            width=6,
        ),
        Panel(
            "Resolve compliance by project",
            "bargauge",
            (q(share(counted(res_in, "$__range", by), counted(res, "$__range", by)), "{{customer}} {{project}}"),),
            unit="percentunit",
            description="Resolutions within the resolve target / all resolutions against one, over the range",
            width=6,
        ),
    )


def known_issue_panels() -> tuple[Panel, ...]:
    answered = 'ticketloop_knowledge_answered_count{project=~"$project"}'
    said = 'ticketloop_knowledge_workaround_answers_count{project=~"$project"}'
    return (
        Panel(
            "Reports answered with a known issue's workaround",
            "bargauge",
            (q(f"max by (project, known_issue) ({answered})", "{{project}} {{known_issue}}"),),
            description="Customer reports a project's known issue answered with its workaround, counted in the read "
            "model (all time; the known issue's id as in the handover package)",
            width=12,
        ),
        Panel(
            "Did the workaround solve it?",
            "bargauge",
            (q(f"max by (project, known_issue, solved) ({said})", "{{project}} {{known_issue}} solved: {{solved}}"),),
            description="What reporters answered on the 'did it help?' page of the workaround they were sent "
            "(the newest answer of each report)",
            width=12,
        ),
    )


CUSTOMER_GAPS = """Not shown, for lack of a metric (none is faked):

- **breaches, warnings and escalations per project**: the SLA's breach, warning and escalation counters are
  labelled by customer (all of a customer's projects together), not by project;
- **known-issue hits per customer**: the known-issue figures are by project only (a project names its customer in
  the phase panel)."""


def customer_dashboard() -> Spec:
    return Spec(
        uid="ticketloop-customers",
        title="ticketloop customers",
        description="SLA compliance, breaches and escalations per customer; hypercare status, backlog, response "
        "times and known-issue hits per project; backlog and response times per team",
        variables=(
            Variable("customer", "label_values(ticketloop_sla_acknowledged_total, customer)"),
            Variable("project", "label_values(ticketloop_project_phase_info, project)"),
            Variable("team", "label_values(ticketloop_tickets_unresolved_count, team)"),
        ),
        rows=(
            Row("Compliance by customer", customer_compliance_panels()),
            Row("Deadlines by customer", customer_deadline_panels()),
            Row("Projects: hypercare and backlog", project_status_panels()),
            Row("Response times and compliance by project", project_response_panels()),
            Row("Known issues", known_issue_panels()),
            Row("Backlog and response times by team", customer_team_panels()),
            Row("Not shown", (Panel("Figures without a metric", "text", content=CUSTOMER_GAPS, width=24, height=5),)),
        ),
    )


# --- ticketloop itself ----------------------------------------------------------------------------------------------

RATE = "$__rate_interval"


def ops_service_panels() -> tuple[Panel, ...]:
    return (
        Panel(
            "Services up",
            "stat",
            (q('up{job=~"ticketloop-.*"}', "{{job}} {{instance}}"),),
            description="1 when Prometheus's last scrape of the service's /metrics answered",
            width=12,
        ),
        Panel(
            "Ticket changes by change",
            "timeseries",
            (q(f"sum by (change) (rate(ticketloop_router_ticket_changes_total[{RATE}]))", "{{change}}"),),
            unit="ops",
            description="Ticket events the router emitted per second: opened, acknowledged, resolved, ...",
            width=12,
        ),
    )


def ops_consumer_panels() -> tuple[Panel, ...]:
    lag = "ticketloop_consumer_lag_records_count"
    polled = "ticketloop_consumer_last_poll_timestamp_seconds"
    dead = "ticketloop_deadletter_records_total"
    return (
        Panel(
            "Consumer lag by service and topic",
            "timeseries",
            (q(f"sum by (service, topic) ({lag})", "{{service}} {{topic}}"),),
            description="Records the services' Kafka consumers are behind the ends of their partitions (of a "
            "read-committed consumer: the last stable offset), summed over their instances",
            width=12,
        ),
        Panel(
            "Since each consumer's last poll",
            "timeseries",
            (q(f"time() - max by (service, group) ({polled})", "{{service}} {{group}}"),),
            unit="s",
            description="A worker polls Kafka every 50 ms or so, idle or busy. One that stopped (waiting on a "
            "database that is down, a handler that hangs) handles nothing and keeps reporting its last lag: "
            "TicketloopConsumerStalled pages after two minutes",
            width=12,
        ),
        Panel(
            "Dead letters per hour",
            "timeseries",
            (q(counted(dead, "1h", ["service", "reason_kind"]), "{{service}} {{reason_kind}}"),),
            description="Records moved to the deadletter topic: undecodable input, a command for an unknown "
            "ticket, a record whose handling raised, a notification given up",
            width=6,
        ),
        Panel(
            "Dead letters over the range",
            "bargauge",
            (q(f"{counted(dead, '$__range', ['service', 'reason_kind'])} > 0", "{{service}} {{reason_kind}}"),),
            description="Why, and what each was, is in the record on the deadletter topic (the service logs where "
            "it came from)",
            width=6,
        ),
    )


def ops_intake_panels() -> tuple[Panel, ...]:
    rejected = "ticketloop_intake_requests_rejected_total"
    return (
        Panel(
            "Events accepted by integration",
            "timeseries",
            (q(f"sum by (integration) (rate(ticketloop_intake_events_accepted_total[{RATE}]))", "{{integration}}"),),
            unit="ops",
            description="Events per second the broker acknowledged (intake answered 2xx)",
            width=8,
        ),
        Panel(
            "Requests rejected by reason",
            "timeseries",
            (q(f"sum by (reason) (rate({rejected}[{RATE}]))", "{{reason}}"),),
            unit="reqps",
            description="4xx and 5xx answers: malformed, unauthorized, invalid, oversize, rate_limited, unavailable",
            width=8,
        ),
        Panel(
            "Rejections over the range",
            "bargauge",
            (q(counted(rejected, "$__range", ["reason"]), "{{reason}}"),),
            description="rate_limited: a sender over its integration's limit; unavailable: the broker did not answer",
            width=8,
        ),
        Panel(
            "Publish latency (p50, p99)",
            "timeseries",
            tuple(
                q(quantile(p, "ticketloop_intake_publish_seconds", RATE, []), n)
                for p, n in ((0.5, "p50"), (0.99, "p99"))
            ),
            unit="s",
            description="From a request's first write to the broker's acknowledgement of all of them",
            width=8,
        ),
        Panel(
            "Truncated alerts and unknown severities",
            "timeseries",
            (
                q(
                    counted("ticketloop_intake_truncated_alerts_total", "1h", ["integration"]),
                    "truncated {{integration}}",
                ),
                q(
                    counted("ticketloop_intake_unmapped_severity_total", "1h", ["integration"]),
                    "unknown severity {{integration}}",
                ),
            ),
            description="Alerts a sender left out of its webhook; severity words taken as warning",
            width=8,
        ),
        Panel(
            "One-click action links",
            "timeseries",
            (
                q(
                    counted("ticketloop_intake_action_links_total", "1h", ["action", "result"]),
                    "{{action}} {{result}}",
                ),
            ),
            width=8,
        ),
    )


def ops_router_panels() -> tuple[Panel, ...]:
    return (
        Panel(
            "Acknowledges and resolves without a ticket",
            "timeseries",
            (
                q(
                    counted("ticketloop_router_events_without_ticket_total", "1h", ["status", "source"]),
                    "{{status}} {{source}}",
                ),
            ),
            description="e.g. PagerDuty's for an unknown dedup_key: answered 202 as PagerDuty does, counted here",
            width=8,
        ),
        Panel(
            "Read model projection",
            "timeseries",
            (
                q(f"sum(rate(ticketloop_router_projected_events_total[{RATE}]))", "written"),
                q("sum(increase(ticketloop_router_projection_refused_total[1h]))", "refused (per hour)"),
            ),
            description="Ticket events and escalations written to SQL, and those the read model refused",
            width=8,
        ),
        Panel(
            "Config reloads",
            "timeseries",
            tuple(
                q(
                    counted(f"ticketloop_{service}_config_reloads_total", "1h", ["result"]),
                    f"{service} {{{{result}}}}",
                )
                for service in ("router", "notifier")
            ),
            description="Config file changes the router and the notifier saw; rejected: a bad file, the old one stays",
            width=8,
        ),
    )


def ops_sla_panels() -> tuple[Panel, ...]:
    lateness = "ticketloop_sla_timer_lateness_seconds"
    return (
        Panel(
            "SLA timer lateness (p50, p99)",
            "timeseries",
            tuple(q(quantile(p, lateness, RATE, []), n) for p, n in ((0.5, "p50"), (0.99, "p99"))),
            unit="s",
            description="How late warnings, breaches and escalations fired after their due time",
            width=12,
        ),
        Panel(
            "Armed clocks",
            "timeseries",
            (q("sum by (instance) (ticketloop_sla_armed_clocks_count)", "{{instance}}"),),
            description="Clocks with something due, per sla worker",
            width=12,
        ),
    )


def ops_notifier_panels() -> tuple[Panel, ...]:
    deliveries = "ticketloop_notifier_deliveries_total"
    return (
        Panel(
            "Deliveries by status",
            "timeseries",
            (q(f"sum by (status) (rate({deliveries}[{RATE}]))", "{{status}}"),),
            unit="ops",
            description="sent; failed (refused, or given up after retries and dead-lettered); suppressed (muted)",
            width=8,
        ),
        Panel(
            "Failed deliveries over the range",
            "bargauge",
            (q(counted(f'{deliveries}{{status="failed"}}', "$__range", ["channel", "kind"]), "{{channel}} {{kind}}"),),
            description="Notifications refused by a channel or given up on (kept for `ticketloop deliveries redrive`)",
            width=8,
        ),
        Panel(
            "Waiting notifications and open circuits",
            "timeseries",
            (
                q("sum by (channel) (ticketloop_notifier_pending_count)", "waiting {{channel}}"),
                q("sum by (channel) (ticketloop_notifier_breakers_open_count)", "open circuits {{channel}}"),
            ),
            description="Notifications held in the lanes (rate-limited, retrying) and targets whose breaker is open",
            width=8,
        ),
        Panel(
            "Deliveries by channel",
            "timeseries",
            (q(f"sum by (channel, status) (rate({deliveries}[{RATE}]))", "{{channel}} {{status}}"),),
            unit="ops",
            width=12,
        ),
        Panel(
            "Digests under rate limits",
            "timeseries",
            (q(counted("ticketloop_notifier_digests_total", "1h", ["channel"]), "{{channel}}"),),
            description="Backlogs folded into one message per target instead of queueing them",
            width=12,
        ),
    )


OPS_GAPS = """Not shown, for lack of a metric (none is faked):

- **lag of a group with no running member**: each worker reports the lag of the partitions it holds; when every
  worker of a service is down nobody does (*Services up* and the TicketloopServiceDown alert show it; Kafka's
  `kafka-consumer-groups.sh --describe` reads the committed offsets);
- **the lag of a worker that stopped polling** (stuck in its handler, e.g. the notifier waiting for its database):
  it reports the figure of its last poll until it polls again;
- **the broker itself** (disk, under-replicated partitions, request latency): a Kafka exporter's metrics."""


def ops_dashboard() -> Spec:
    return Spec(
        uid="ticketloop-ops",
        title="ticketloop itself",
        description="The services' health: consumer lag and dead letters, intake, router, sla timers and notifier "
        "deliveries",
        variables=(),
        rows=(
            Row("Services", ops_service_panels()),
            Row("Kafka consumers and dead letters", ops_consumer_panels()),
            Row("Intake", ops_intake_panels()),
            Row("Router", ops_router_panels()),
            Row("SLA worker", ops_sla_panels()),
            Row("Notifier", ops_notifier_panels()),
            Row("Not shown", (Panel("Figures without a metric", "text", content=OPS_GAPS, width=24, height=6),)),
        ),
    )


def specs() -> tuple[Spec, ...]:
    return (sla_dashboard(), customer_dashboard(), ops_dashboard())


# --- to Grafana's JSON ----------------------------------------------------------------------------------------------

PanelBuilder = stat.Panel | timeseries.Panel | bargauge.Panel | text.Panel


def panel_builder(panel: Panel, panel_id: int) -> PanelBuilder:
    builder: PanelBuilder
    match panel.kind:
        case "stat":
            builder = stat.Panel()
            if panel.text_mode is not None:
                builder.text_mode(panel.text_mode)
        case "timeseries":
            builder = timeseries.Panel()
        case "bargauge":
            builder = bargauge.Panel()
        case "text":
            builder = text.Panel().content(panel.content)
    builder.id(panel_id).title(panel.title).height(panel.height).span(panel.width)
    if panel.description:
        builder.description(panel.description)
    if panel.unit:
        builder.unit(panel.unit)
    if panel.queries:
        builder.datasource(DATASOURCE)
    for ref, query in zip("ABCDEFGH", panel.queries, strict=False):
        target = Dataquery().ref_id(ref).expr(query.expr).legend_format(query.legend)
        builder.with_target(target.instant() if query.instant else target)
    return builder


def variable_builder(variable: Variable) -> QueryVariable:
    return (
        QueryVariable(variable.name)
        .datasource(DATASOURCE)
        .query(variable.query)
        .include_all(True)
        .multi(True)
        .all_value(".*")
        .current(VariableOption(text="All", value="$__all", selected=True))
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
    )


def without_nulls(value: Any) -> Any:
    """The SDK writes unset options as null; Grafana's own JSON leaves them out."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def to_json(spec: Spec) -> dict[str, Any]:
    board = (
        Dashboard(spec.title)
        .uid(spec.uid)
        .tags(["ticketloop"])
        .editable()
        .refresh("1m")
        .time("now-24h", "now")
        .with_variable(DatasourceVariable("datasource").type("prometheus"))
    )
    if spec.description:
        board.description(spec.description)
    for variable in spec.variables:
        board.with_variable(variable_builder(variable))
    panel_id = 0
    for row in spec.rows:
        if row.title:
            panel_id += 1
            board.with_row(RowBuilder(row.title).id(panel_id))
        for panel in row.panels:
            panel_id += 1
            board.with_panel(panel_builder(panel, panel_id))
    encoded: dict[str, Any] = json.loads(JSONEncoder().encode(board.build()))
    return without_nulls(encoded)  # type: ignore[no-any-return]


def render(spec: Spec) -> str:
    return json.dumps(to_json(spec), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def files() -> dict[str, str]:
    """Each dashboard's file name and its JSON text, as committed."""
    return {f"{spec.uid}.json": render(spec) for spec in specs()}


def main() -> None:
    DASHBOARDS_DIR.mkdir(parents=True, exist_ok=True)
    wanted = files()
    for stale in DASHBOARDS_DIR.glob("*.json"):
        if stale.name not in wanted:
            stale.unlink()
    for name, content in wanted.items():
        (DASHBOARDS_DIR / name).write_text(content)
        print(f"wrote {DASHBOARDS_DIR / name}")  # noqa: T201


if __name__ == "__main__":
    main()
