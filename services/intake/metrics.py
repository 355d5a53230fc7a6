"""Intake's metrics: requests accepted and refused, publish time, and the unresolved tickets and the satisfaction
index counted in the read model when Prometheus scrapes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from shared.infra.logging import get_logger
from shared.infra.metrics import check_name, counter, histogram
from shared.store import db

log = get_logger(__name__)


class UnresolvedTickets(Collector):
    """``ticketloop_tickets_unresolved_count{state,team,project,customer}``, counted in the read model when
    Prometheus scrapes (project and customer empty for a ticket outside any project: both come from projects.yaml,
    so their values are bounded by it)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            check_name("ticketloop_tickets_unresolved_count"),
            "Tickets open or acknowledged, by state, team, project and customer",
            labels=["state", "team", "project", "customer"],
        )
        try:
            for state, team, project, customer, n in db.count_unresolved(self.engine):
                gauge.add_metric([state, team, project or "", customer or ""], n)
        except SQLAlchemyError as exc:  # the read model is down: the other metrics still answer
            log.warning("unresolved_tickets_unavailable", error=str(exc))
            return
        yield gauge


SATISFACTION_PERIOD = timedelta(days=90)


class SatisfactionIndex(Collector):
    """``ticketloop_satisfaction_index_ratio`` (the share of 4s and 5s) and ``ticketloop_satisfaction_answers_count``
    of the survey answers of the last 90 days, by project, customer and team, counted in the read model when
    Prometheus scrapes (shared/rules/satisfaction.py)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["project", "customer", "team"]
        index = GaugeMetricFamily(
            check_name("ticketloop_satisfaction_index_ratio"),
            "Share of survey answers of the last 90 days that are 4 or 5",
            labels=labels,
        )
        answers = GaugeMetricFamily(
            check_name("ticketloop_satisfaction_answers_count"),
            "Survey answers of the last 90 days",
            labels=labels,
        )
        try:
            cells = db.survey_cells(self.engine, datetime.now(UTC) - SATISFACTION_PERIOD)
        except SQLAlchemyError as exc:  # the read model is down: the other metrics still answer
            log.warning("satisfaction_unavailable", error=str(exc))
            return
        for project, customer, team, n, satisfied in cells:
            key = [project or "", customer or "", team]
            answers.add_metric(key, n)
            index.add_metric(key, satisfied / n)
        yield index
        yield answers


class KnownIssueAnswers(Collector):
    """``ticketloop_knowledge_answered_count{project,known_issue}`` (reports a known issue answered with its
    workaround) and ``ticketloop_knowledge_workaround_answers_count{project,known_issue,solved}`` (what their
    reporters said last), counted in the read model when Prometheus scrapes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        answered = GaugeMetricFamily(
            check_name("ticketloop_knowledge_answered_count"),
            "Customer reports a known issue answered with its workaround",
            labels=["project", "known_issue"],
        )
        said = GaugeMetricFamily(
            check_name("ticketloop_knowledge_workaround_answers_count"),
            "What reporters said of the workaround they were sent (solved: yes or no)",
            labels=["project", "known_issue", "solved"],
        )
        try:
            rows = db.workaround_tally(self.engine)
        except SQLAlchemyError as exc:  # the read model is down: the other metrics still answer
            log.warning("known_issue_answers_unavailable", error=str(exc))
            return
        for row in rows:
            answered.add_metric([row.project, row.known_issue], row.answered)
            said.add_metric([row.project, row.known_issue, "yes"], row.said_solved)
            said.add_metric([row.project, row.known_issue, "no"], row.said_not_solved)
        yield answered
        yield said


class IntakeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.accepted = counter(
            registry, "ticketloop_intake_events_accepted_total", "Events acknowledged by Kafka", ["integration"]
        )
        self.rejected = counter(
            registry, "ticketloop_intake_requests_rejected_total", "Requests answered 4xx/5xx", ["reason"]
        )
        self.truncated = counter(
            registry,
            "ticketloop_intake_truncated_alerts_total",
            "Alerts a sender left out of its webhook (Alertmanager's and Grafana's truncatedAlerts)",
            ["integration"],
        )
        self.unmapped_severity = counter(
            registry,
            "ticketloop_intake_unmapped_severity_total",
            "Alerts whose severity word neither the built-in words nor the integration's severities know",
            ["integration"],
        )
        self.publish_seconds = histogram(
            registry, "ticketloop_intake_publish_seconds", "Time until Kafka acknowledged a request's writes"
        )
