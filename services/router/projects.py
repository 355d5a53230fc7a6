"""projects.yaml: customer projects and the hypercare handover. Pure functions.

    projects:
      - name: webshop
        customer: acme
        matchers: ['customer="acme"', 'project="webshop"']   # which events belong to the project
        go_live: 2026-11-01T09:00:00+08:00
        hypercare: 30d                                          # default 30d
        implementation: {team: implementation, engineers: [ian]}
        operations: {team: operations}
        known_issues:                                           # the handover package (services/router/knowledge.py)
          - {id: WEB-12, title: ..., description: ..., keywords: [checkout], matchers: [...], workaround: ...}

Before go-live and during hypercare the implementation engineer owns the project's tickets and operations
watches (is copied); after hypercare operations owns them and the implementation team becomes the next
escalation level. A project overrides the routing tree's owner for its tickets; every decision says why.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from services.router.rules import RouteDecision
from shared.events import bounded_time
from shared.infra.config import Duration
from shared.rules.matchers import Matcher, MatcherList, parse_matcher
from shared.rules.risk import RiskSettings
from shared.rules.satisfaction import SatisfactionGoal


class Phase(StrEnum):
    pre_go_live = "pre-go-live"
    hypercare = "hypercare"
    operations = "operations"


class Side(BaseModel):
    model_config = ConfigDict(extra="forbid")

    team: str = Field(min_length=1)
    engineers: list[str] = Field(default_factory=list)


class KnownIssue(BaseModel):
    """An entry of a project's handover package: what it looks like and how to work around it."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    title: str = Field(min_length=1)
    matchers: MatcherList = Field(default_factory=list, description="labels the feedback must carry")
    keywords: list[str] = Field(default_factory=list, description="any of these in the summary or details")
    description: str = Field(
        default="", description="what it looks like to a customer, compared by meaning with reports beside the title"
    )
    workaround: str = Field(min_length=1)
    reply_to_reporter: bool = Field(default=False, description="email the workaround to the reporter at once")
    source: str | None = Field(
        default=None, description="the handover package it comes from (set when the package is read; not written)"
    )

    @model_validator(mode="after")
    def _something_to_match(self) -> KnownIssue:
        if not self.matchers and not self.keywords:
            raise ValueError("a known issue needs matchers or keywords, or it would match every report")
        return self


class Project(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    customer: str = Field(min_length=1)
    matchers: MatcherList = Field(min_length=1)
    go_live: Annotated[AwareDatetime, AfterValidator(bounded_time)]
    hypercare: Duration = Field(default=timedelta(days=30))
    implementation: Side
    operations: Side
    known_issues: list[KnownIssue] = Field(default_factory=list)
    satisfaction: SatisfactionGoal | None = Field(
        default=None, description="the customer satisfaction goal both teams are measured by (None: none)"
    )
    risk: RiskSettings = Field(
        default_factory=RiskSettings, description="the warning when tickets or breaches rise above the baseline"
    )
    package_version: int | None = Field(
        default=None, description="the handover package in force (set when handover/<project>/ is read; not written)"
    )
    package_lacks: list[str] = Field(
        default_factory=list, description="what the package in force still lacks (set with package_version)"
    )

    def compiled_matchers(self) -> list[Matcher]:
        return [parse_matcher(m) for m in self.matchers]

    @property
    def hypercare_ends(self) -> datetime:
        return self.go_live + self.hypercare

    def phase(self, at: datetime) -> Phase:
        if at < self.go_live:
            return Phase.pre_go_live
        if at < self.hypercare_ends:
            return Phase.hypercare
        return Phase.operations


class ProjectsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    projects: list[Project] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> ProjectsConfig:
        names = [p.name for p in self.projects]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"project names must be unique: {dup}")
        return self

    def project_for(self, labels: dict[str, str]) -> Project | None:
        """The first project whose matchers all match."""
        return next((p for p in self.projects if all(m.matches(labels) for m in p.compiled_matchers())), None)


@dataclass(frozen=True, slots=True)
class ProjectStatus:
    """Where a project stands at a moment: its phase, and when it goes live and its hypercare ends."""

    project: str
    customer: str
    phase: Phase
    go_live: datetime
    hypercare_ends: datetime


def project_statuses(projects: ProjectsConfig, at: datetime) -> list[ProjectStatus]:
    """Every configured project's status ``at`` (in the file's order)."""
    return [ProjectStatus(p.name, p.customer, p.phase(at), p.go_live, p.hypercare_ends) for p in projects.projects]


def apply_project(
    decision: RouteDecision, labels: dict[str, str], projects: ProjectsConfig, at: datetime
) -> RouteDecision:
    """The routing decision with the project's handover applied (unchanged when no project matches)."""
    project = projects.project_for(labels)
    if project is None:
        return decision
    phase = project.phase(at)
    impl, ops = project.implementation, project.operations
    ends = project.hypercare_ends.date().isoformat()
    watchers: tuple[str, ...]
    if phase is Phase.operations:
        side, watchers, next_level = ops, (), impl.team
        why = f"hypercare ended {ends}: operations owns it, implementation is the next level"
    else:
        side, watchers, next_level = impl, (ops.team,), None
        until = "before go-live" if phase is Phase.pre_go_live else f"hypercare until {ends}"
        why = f"{until}: the implementation engineer owns it, operations watches"
    owner, person = side.team, (side.engineers[0] if side.engineers else None)
    others = tuple(w for w in (*watchers, *decision.watchers) if w != owner)
    return replace(
        decision,
        team=owner,
        person=person,
        watchers=tuple(dict.fromkeys(others)),
        project=project.name,
        customer=project.customer,
        phase=phase.value,
        next_level=next_level,
        project_reason=f"project {project.name} ({project.customer}), phase {phase.value}, {why}"
        + (f"; handover package v{project.package_version}" if project.package_version else ""),
        phase_until=None if phase is Phase.operations else project.hypercare_ends,
    )
