"""The routing decision: made once per event, where the event is assigned to its group, and carried with it.

One function decides (``decide_labels``: the routing tree, then the project's phase and handover, then the
maintenance windows; ``decide_event`` adds who is on call for the team), at the time the event was received, so a
replay decides alike. The router's assign step computes it for each new event, uses it for the group key, and
carries it — through the grouping hop and on to the ticket's single writer — in ``Routed``, the decision's wire
form. The lifecycle applies the carried decision, so a routing reload between the two hops cannot split them
(the group would be one route's and the owner another's). ``ticketloop routes test`` calls ``decide_labels`` too.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict

from services.router.projects import ProjectsConfig, apply_project
from services.router.rules import RouteDecision, RoutingConfig, decide
from shared.events import InboundEvent, Severity
from shared.rules.maintenance import muted_until
from shared.rules.matchers import matcher_labels
from shared.rules.oncall import OnCall, Override, TeamsConfig, on_call


def decide_labels(
    labels: dict[str, str], severity: Severity, routing: RoutingConfig, projects: ProjectsConfig, at: datetime
) -> RouteDecision:
    """The routing tree, then the project's handover at ``at``, then the maintenance windows open at ``at``.
    ``labels`` is the view every matcher sees (shared.rules.matchers.matcher_labels)."""
    decision = apply_project(decide(labels, severity, routing), labels, projects, at)
    until, names = muted_until(labels, at, routing.maintenance_windows)
    return replace(decision, muted_until=until, muted_by=tuple(names)) if until else decision


def decide_event(
    event: InboundEvent,
    routing: RoutingConfig,
    projects: ProjectsConfig,
    teams: TeamsConfig,
    overrides: list[Override],
) -> RouteDecision:
    """An event's whole decision, at the time it was received: route, project, maintenance, and — when the route
    names a team but no person — whoever is on call for that team then (a new ticket's owner)."""
    labels = matcher_labels(event.labels, event.severity.value, event.source, event.kind.value)
    decision = decide_labels(labels, event.severity, routing, projects, event.received_at)
    if decision.person is not None:
        return decision
    return with_on_call(decision, on_call(decision.team, teams, overrides, event.received_at))


def with_on_call(decision: RouteDecision, found: OnCall | None) -> RouteDecision:
    """A decision for a team (no person yet) goes to whoever is on call for that team, if anyone is."""
    if decision.person is not None or found is None or found.team != decision.team:
        return decision
    return replace(decision, person=found.person, on_call=found.describe())


class Routed(BaseModel):
    """A RouteDecision on the wire (in the router's internal topics, with the event it was made for)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    team: str
    priority: str
    policy: str
    rule: str
    person: str | None = None
    channels: tuple[str, ...] = ()
    watchers: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    group_wait_s: float = 0.0
    group_interval_s: float | None = None
    project: str | None = None
    customer: str | None = None
    phase: str | None = None
    next_level: str | None = None
    project_reason: str | None = None
    muted_until: AwareDatetime | None = None
    muted_by: tuple[str, ...] = ()
    on_call: str | None = None


def to_wire(d: RouteDecision) -> Routed:
    return Routed(
        team=d.team,
        priority=d.priority,
        policy=d.policy,
        rule=d.rule,
        person=d.person,
        channels=d.channels,
        watchers=d.watchers,
        group_by=d.group_by,
        group_wait_s=d.group_wait.total_seconds(),
        group_interval_s=d.group_interval.total_seconds() if d.group_interval is not None else None,
        project=d.project,
        customer=d.customer,
        phase=d.phase,
        next_level=d.next_level,
        project_reason=d.project_reason,
        muted_until=d.muted_until,
        muted_by=d.muted_by,
        on_call=d.on_call,
    )


def from_wire(r: Routed) -> RouteDecision:
    return RouteDecision(
        team=r.team,
        priority=r.priority,
        policy=r.policy,
        rule=r.rule,
        person=r.person,
        channels=r.channels,
        watchers=r.watchers,
        group_by=r.group_by,
        group_wait=timedelta(seconds=r.group_wait_s),
        group_interval=timedelta(seconds=r.group_interval_s) if r.group_interval_s is not None else None,
        project=r.project,
        customer=r.customer,
        phase=r.phase,
        next_level=r.next_level,
        project_reason=r.project_reason,
        muted_until=r.muted_until,
        muted_by=r.muted_by,
        on_call=r.on_call,
    )


def carried_decision(
    carried: Routed | None,
    event: InboundEvent,
    routing: RoutingConfig,
    projects: ProjectsConfig,
    teams: TeamsConfig,
    overrides: list[Override],
) -> RouteDecision:
    """The decision an event carries to its ticket; an event written before decisions were carried is decided
    again (as it always was then)."""
    if carried is not None:
        return from_wire(carried)
    return decide_event(event, routing, projects, teams, overrides)
