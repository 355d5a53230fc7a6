"""routing.yaml: label matchers to an owner team, a priority and an SLA policy. Pure functions.

    default_team: operations
    rules:
      - name: payments-critical
        match: {service: payments}          # label equals value
        match_re: {severity: "critical|error"}  # label fully matches regex
        team: payments-oncall
        priority: P1                          # else from severity via `priorities`
        policy: gold

First matching rule wins. Matchers see the event's labels plus ``severity``, ``source`` and ``kind``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.events import InboundEvent, Severity

DEFAULT_PRIORITIES = {Severity.critical: "P1", Severity.error: "P2", Severity.warning: "P3", Severity.info: "P4"}


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    match: dict[str, str] = Field(default_factory=dict)
    match_re: dict[str, str] = Field(default_factory=dict)
    team: str = Field(min_length=1)
    priority: str | None = Field(default=None, pattern=r"^P[1-5]$")
    policy: str | None = None

    @field_validator("match_re")
    @classmethod
    def _compiles(cls, value: dict[str, str]) -> dict[str, str]:
        for label, pattern in value.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"match_re.{label}: invalid regular expression {pattern!r}: {exc}") from exc
        return value


class RoutingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_team: str = Field(min_length=1)
    default_policy: str = "default"
    priorities: dict[Severity, str] = Field(default_factory=lambda: dict(DEFAULT_PRIORITIES))
    rules: list[Rule] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RouteDecision:
    team: str
    priority: str
    policy: str
    rule: str

    def explain(self) -> str:
        return f"rule {self.rule!r}: team {self.team}, priority {self.priority}, policy {self.policy}"


def event_labels(event: InboundEvent) -> dict[str, str]:
    return {**event.labels, "severity": event.severity.value, "source": event.source, "kind": event.kind.value}


def matches(rule: Rule, labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in rule.match.items()):
        return False
    return all(re.fullmatch(p, labels.get(k, "")) is not None for k, p in rule.match_re.items())


def route(event: InboundEvent, config: RoutingConfig) -> RouteDecision:
    labels = event_labels(event)
    default_priority = config.priorities.get(event.severity, DEFAULT_PRIORITIES[event.severity])
    for rule in config.rules:
        if matches(rule, labels):
            return RouteDecision(
                team=rule.team,
                priority=rule.priority or default_priority,
                policy=rule.policy or config.default_policy,
                rule=rule.name,
            )
    return RouteDecision(config.default_team, default_priority, config.default_policy, "(default)")
