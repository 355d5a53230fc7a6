"""routing.yaml: a routing tree in Alertmanager's shape. Pure functions.

    priorities: {critical: P1, error: P2, warning: P3, info: P4}   # optional; these are the defaults
    route:                       # the root: its settings are everyone's defaults
      team: operations
      policy: default
      routes:
        - name: database
          matchers: ['service="database"', 'severity=~"critical|error"']
          team: dba
          priority: P1
          routes:
            - name: database-eu
              matchers: ['region="eu"']
              person: erik          # owner can be a person (with their team)
        - name: customer-feedback
          match: {kind: feedback}   # Alertmanager's older map form (match / match_re) works too
          team: implementation
          continue: true            # keep looking: later matching siblings are copied (watchers)
        - name: checkout
          matchers: ['service="checkout"']
          team: web
          channels: [webhook]       # only these channel kinds for this route's notifications

A child inherits every setting it does not set. Routing walks depth first: a node matches when all its matchers
match; the first matching child is taken (and, with ``continue: true``, the siblings after it are tried too);
when no child matches, the node itself routes. Matchers see the event's labels plus ``severity``, ``source`` and
``kind``. The first match owns the ticket; further matches (through ``continue``) become watchers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.events import InboundEvent, Severity
from shared.infra.config import Duration
from shared.rules.inhibition import InhibitRule
from shared.rules.maintenance import MaintenanceWindow
from shared.rules.matchers import Matcher, MatcherList, Op, compile_regex, matcher_labels, parse_matcher

DEFAULT_PRIORITIES = {Severity.critical: "P1", Severity.error: "P2", Severity.warning: "P3", Severity.info: "P4"}


class Route(BaseModel):
    """One node of the tree; unset fields are inherited from the parent."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = Field(default=None, min_length=1)
    matchers: MatcherList = Field(default_factory=list)
    match: dict[str, str] = Field(default_factory=dict)
    match_re: dict[str, str] = Field(default_factory=dict)
    team: str | None = Field(default=None, min_length=1)
    person: str | None = Field(default=None, min_length=1)
    priority: str | None = Field(default=None, pattern=r"^P[1-5]$")
    policy: str | None = Field(default=None, min_length=1)
    channels: list[str] | None = None
    group_by: list[str] | None = Field(
        default=None, description="labels whose values make one ticket of many alerts; unset: one ticket per alert"
    )
    group_wait: Duration | None = Field(
        default=None, description="wait this long before the first notification of a new ticket (collect the storm)"
    )
    group_interval: Duration | None = Field(
        default=None, description="then at most one notification about alerts joining the ticket per this interval"
    )
    continue_: bool = Field(default=False, alias="continue")
    routes: list[Route] = Field(default_factory=list)

    @field_validator("match_re")
    @classmethod
    def _compiles(cls, value: dict[str, str]) -> dict[str, str]:
        for label, pattern in value.items():
            try:
                compile_regex(pattern)
            except ValueError as exc:
                raise ValueError(f"match_re.{label}: invalid regular expression {pattern!r}: {exc}") from exc
        return value

    def all_matchers(self) -> list[Matcher]:
        return (
            [parse_matcher(m) for m in self.matchers]
            + [Matcher(k, Op.eq, v) for k, v in self.match.items()]
            + [Matcher(k, Op.re, v) for k, v in self.match_re.items()]
        )


class FlapPolicy(BaseModel):
    """An alert that changes state (firing <-> resolved) ``changes`` times within ``within`` is flapping: its ticket
    stays open (no resolve, no reopen churn, no resolution mails) until nothing has changed for ``stable_for``."""

    model_config = ConfigDict(extra="forbid")

    changes: int = Field(default=4, ge=2, le=64)
    within: Duration = Field(default=timedelta(minutes=10))
    stable_for: Duration = Field(default=timedelta(minutes=5))


class RoutingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    maintenance_windows: list[MaintenanceWindow] = Field(default_factory=list)
    inhibit_rules: list[InhibitRule] = Field(default_factory=list)
    flapping: FlapPolicy | None = Field(default=None, description="flap detection; off unless configured")
    priorities: dict[Severity, str] = Field(default_factory=lambda: dict(DEFAULT_PRIORITIES))
    reopen_window: Duration = Field(
        default=timedelta(minutes=30),
        description="the same problem firing again within this long after its resolution reopens the ticket; "
        "later, it opens a new one",
    )
    route: Route

    @model_validator(mode="after")
    def _root(self) -> RoutingConfig:
        if self.route.team is None:
            raise ValueError("route.team is required: the root route owns whatever no other route matches")
        if self.route.all_matchers():
            raise ValueError("the root route matches everything: it cannot have matchers")
        return self

    @cached_property
    def compiled(self) -> CompiledRoute:
        return _compile(self.route, parent=None, path=("root",))


@dataclass(frozen=True)
class CompiledRoute:
    path: tuple[str, ...]
    matchers: tuple[Matcher, ...]
    team: str
    person: str | None
    priority: str | None
    policy: str
    channels: tuple[str, ...]
    group_by: tuple[str, ...]
    group_wait: timedelta
    group_interval: timedelta | None
    continue_: bool
    children: tuple[CompiledRoute, ...] = field(default_factory=tuple)


def _compile(route: Route, parent: CompiledRoute | None, path: tuple[str, ...]) -> CompiledRoute:
    team = route.team or (parent.team if parent else "")
    node = CompiledRoute(
        path=path,
        matchers=tuple(route.all_matchers()),
        team=team,
        # a person is inherited only with the team they belong to
        person=route.person if route.person or route.team else (parent.person if parent else None),
        priority=route.priority or (parent.priority if parent else None),
        policy=route.policy or (parent.policy if parent else "default"),
        channels=tuple(route.channels) if route.channels is not None else (parent.channels if parent else ()),
        group_by=tuple(route.group_by) if route.group_by is not None else (parent.group_by if parent else ()),
        group_wait=route.group_wait
        if route.group_wait is not None
        else (parent.group_wait if parent else timedelta(0)),
        group_interval=route.group_interval
        if route.group_interval is not None
        else (parent.group_interval if parent else None),
        continue_=route.continue_,
    )
    children = tuple(
        _compile(child, node, (*path, child.name or f"routes[{i}]")) for i, child in enumerate(route.routes)
    )
    return CompiledRoute(**{**node.__dict__, "children": children})


@dataclass(frozen=True, slots=True)
class RouteDecision:
    team: str
    priority: str
    policy: str
    rule: str
    person: str | None = None
    channels: tuple[str, ...] = ()
    watchers: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    group_wait: timedelta = timedelta(0)
    group_interval: timedelta | None = None
    project: str | None = None
    customer: str | None = None
    phase: str | None = None
    next_level: str | None = None
    project_reason: str | None = None
    muted_until: datetime | None = None
    muted_by: tuple[str, ...] = ()
    on_call: str | None = None
    """How the person was found on the team's schedule, when it was."""
    phase_until: datetime | None = None
    """When the project's phase ends and its tickets are handed over (the end of hypercare; None: no handover)."""

    def explain(self) -> str:
        owner = f"{self.person} ({self.team})" if self.person else self.team
        text = f"route {self.rule}: owner {owner}, priority {self.priority}, policy {self.policy}"
        if self.watchers:
            text += f", watchers {', '.join(self.watchers)}"
        if self.project_reason:
            text += f"; {self.project_reason}"
        if self.on_call:
            text += f"; {self.on_call}"
        if self.muted_until is not None:
            text += f"; muted by {', '.join(self.muted_by)} until {self.muted_until.isoformat()}"
        return text


def event_labels(event: InboundEvent) -> dict[str, str]:
    """What matchers see of an event (shared.rules.matchers.matcher_labels)."""
    return matcher_labels(event.labels, event.severity.value, event.source, event.kind.value)


def _walk(node: CompiledRoute, labels: dict[str, str]) -> list[CompiledRoute]:
    """The routes that handle ``labels`` under ``node`` (which matched), in order."""
    found: list[CompiledRoute] = []
    for child in node.children:
        if all(m.matches(labels) for m in child.matchers):
            found.extend(_walk(child, labels))
            if not child.continue_:
                break
    return found or [node]


def route_all(labels: dict[str, str], config: RoutingConfig) -> list[CompiledRoute]:
    return _walk(config.compiled, labels)


def decide(labels: dict[str, str], severity: Severity, config: RoutingConfig) -> RouteDecision:
    matched = route_all(labels, config)
    owner = matched[0]
    priority = owner.priority or config.priorities.get(severity, DEFAULT_PRIORITIES[severity])
    watchers = tuple(dict.fromkeys(r.team for r in matched[1:] if r.team != owner.team))
    return RouteDecision(
        team=owner.team,
        priority=priority,
        policy=owner.policy,
        rule=" > ".join(owner.path),
        person=owner.person,
        channels=owner.channels,
        watchers=watchers,
        group_by=owner.group_by,
        group_wait=owner.group_wait,
        group_interval=owner.group_interval,
    )


def describe(config: RoutingConfig) -> list[dict[str, Any]]:
    """The tree flattened for display: one row per route with its effective settings."""
    rows: list[dict[str, Any]] = []

    def visit(node: CompiledRoute) -> None:
        rows.append(
            {
                "route": " > ".join(node.path),
                "matchers": [str(m) for m in node.matchers],
                "team": node.team,
                "person": node.person,
                "priority": node.priority or "(from severity)",
                "policy": node.policy,
                "continue": node.continue_,
            }
        )
        for child in node.children:
            visit(child)

    visit(config.compiled)
    return rows


__all__ = ["Matcher", "MatcherList", "Op", "parse_matcher"]  # re-exported: the tree's matchers
