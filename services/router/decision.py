"""The routing decision: made once per event, where the event is assigned to its group, and carried with it.

One function decides (``decide_labels``: the routing tree, then the project's phase and handover, then the
maintenance windows; ``decide_event`` adds who is on call for the team), at the time the event was received, so a
replay decides alike. The router's assign step computes it for each new event, uses it for the group key, and
carries it — through the grouping hop and on to the ticket's single writer — in the event's TicketInput
(services/router/hop.py: msgspec writes and reads the RouteDecision dataclass as it is). The lifecycle applies the
carried decision, so a routing reload between the two hops cannot split them (the group would be one route's and
the owner another's). ``ticketloop routes test`` calls ``decide_labels`` too.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from services.router.projects import ProjectsConfig, apply_project
from services.router.rules import RouteDecision, RoutingConfig, decide, event_labels
from shared.events import InboundEvent, Severity
from shared.rules.maintenance import muted_until
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
    labels = event_labels(event)
    decision = decide_labels(labels, event.severity, routing, projects, event.received_at)
    if decision.person is not None:
        return decision
    return with_on_call(decision, on_call(decision.team, teams, overrides, event.received_at))


def with_on_call(decision: RouteDecision, found: OnCall | None) -> RouteDecision:
    """A decision for a team (no person yet) goes to whoever is on call for that team, if anyone is."""
    if decision.person is not None or found is None or found.team != decision.team:
        return decision
    return replace(decision, person=found.person, on_call=found.describe())


def carried_decision(
    carried: RouteDecision | None,
    event: InboundEvent,
    routing: RoutingConfig,
    projects: ProjectsConfig,
    teams: TeamsConfig,
    overrides: list[Override],
) -> RouteDecision:
    """The decision an event carries to its ticket; an event written before decisions were carried is decided
    again (as it always was then)."""
    if carried is not None:
        return carried
    return decide_event(event, routing, projects, teams, overrides)
