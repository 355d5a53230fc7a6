"""Each project's hypercare status as metrics, from projects.yaml as the router holds it now (computed when
Prometheus scrapes: a phase changes with the clock, not with an event):

- ``ticketloop_project_phase_info{project,customer,phase}``: 1 for the project's current phase (pre-go-live,
  hypercare, operations); the other phases have no series;
- ``ticketloop_project_go_live_timestamp_seconds{project,customer}`` and
  ``ticketloop_project_hypercare_ends_timestamp_seconds{project,customer}``: when it goes (went) live and when its
  hypercare ends (ended), as Unix times.

Projects come from the configuration, so the label values are bounded by it. The phase is decided by
services.router.projects (``project_statuses``); this is the shell that reads the watcher and the clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.router.projects import ProjectsConfig, project_statuses
from shared.infra.config import ConfigWatcher
from shared.infra.metrics import check_name


def _now() -> datetime:
    return datetime.now(UTC)


class ProjectGauges(Collector):
    def __init__(self, projects: ConfigWatcher[ProjectsConfig], clock: Callable[[], datetime] = _now) -> None:
        self.projects = projects
        self.clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        phase = GaugeMetricFamily(
            check_name("ticketloop_project_phase_info"),
            "1 for the project's current phase: pre-go-live, hypercare or operations (projects.yaml)",
            labels=["project", "customer", "phase"],
        )
        go_live = GaugeMetricFamily(
            check_name("ticketloop_project_go_live_timestamp_seconds"),
            "When the project goes (went) live, Unix time",
            labels=["project", "customer"],
        )
        ends = GaugeMetricFamily(
            check_name("ticketloop_project_hypercare_ends_timestamp_seconds"),
            "When the project's hypercare ends (ended): operations owns its tickets from then, Unix time",
            labels=["project", "customer"],
        )
        for status in project_statuses(self.projects.current, self.clock()):
            phase.add_metric([status.project, status.customer, status.phase.value], 1)
            go_live.add_metric([status.project, status.customer], status.go_live.timestamp())
            ends.add_metric([status.project, status.customer], status.hypercare_ends.timestamp())
        yield phase
        yield go_live
        yield ends
