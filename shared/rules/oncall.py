"""Teams, on-call rotations and overrides (teams.yaml and the REST API): who is on call for a team at a moment.
Pure.

    people:
      olga: {email: olga@example.test}
      oscar: {email: oscar@example.test}
    teams:
      operations:
        members: [olga, oscar]
        lead: olga
        rotation:
          every: weekly            # or daily
          handoff: "09:00"         # wall-clock time in time_zone, DST or not
          time_zone: Asia/Shanghai
          start: 2026-11-02        # the first shift's day (weekly: its weekday is the handoff day)
          order: [olga, oscar]     # default: members

An override (``POST /api/v1/oncall/{team}/overrides``) puts a person on call for a team from one time to
another; it beats the rotation, and the newest of overlapping overrides wins. A team without a rotation and
without an override has nobody on call: its tickets are assigned to the team.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.infra.config import Address, TimeZone
from shared.rules.windows import TimeWindowRequest


class Person(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Address | None = None
    name: str | None = None
    mobile: str | None = Field(default=None, pattern=r"^\+?[0-9][0-9 -]{4,19}$")
    """For chat robots that mention people by mobile number (DingTalk, WeCom)."""
    role: Literal["viewer", "responder", "admin"] = Field(
        default="responder",
        description="viewer: told about tickets, but their messages carry no action links and a link does not act",
    )


class Rotation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    every: Literal["daily", "weekly"]
    handoff: time
    time_zone: TimeZone = "UTC"
    start: date
    order: list[str] = Field(default_factory=list, description="default: the team's members")

    @property
    def period_days(self) -> int:
        return 1 if self.every == "daily" else 7


class Team(BaseModel):
    model_config = ConfigDict(extra="forbid")

    members: list[str] = Field(default_factory=list)
    lead: str | None = None
    rotation: Rotation | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Team:
        if self.lead is not None and self.lead not in self.members:
            raise ValueError(f"lead {self.lead!r} is not a member")
        if self.rotation is not None:
            order = self.rotation.order or self.members
            if not order:
                raise ValueError("a rotation needs members (or an order)")
            strangers = [p for p in order if p not in self.members]
            if strangers:
                raise ValueError(f"rotation.order names people who are not members: {strangers}")
        return self

    def order(self) -> list[str]:
        if self.rotation is None:
            return []
        return self.rotation.order or self.members


def person_may_act(people: dict[str, Person], person: str) -> bool:
    """Whether a one-click link issued to ``person`` may act: not for a viewer in teams.yaml; for anyone else
    (a responder or admin, or a name teams.yaml does not list, such as "operations team" on a team's link)."""
    found = people.get(person)
    return found is None or found.role != "viewer"


class TeamsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    people: dict[str, Person] = Field(default_factory=dict)
    teams: dict[str, Team] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_people(self) -> TeamsConfig:
        problems = [
            f"teams.{name}.members: {p!r} is not in people"
            for name, team in self.teams.items()
            for p in team.members
            if p not in self.people
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def email_of(self, person: str | None) -> str | None:
        found = self.people.get(person) if person else None
        return found.email if found is not None else None


class OverrideRequest(TimeWindowRequest):
    """The body of ``POST /api/v1/oncall/{team}/overrides``."""

    person: str = Field(min_length=1)
    reason: str = Field(default="", max_length=4000)
    created_by: str | None = Field(default=None, min_length=1, max_length=256)


class Override(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    override_id: str
    team: str
    person: str
    starts_at: datetime
    ends_at: datetime
    created_by: str
    reason: str = ""
    created_at: datetime

    def covers(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at


@dataclass(frozen=True, slots=True)
class Shift:
    person: str
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True, slots=True)
class OnCall:
    team: str
    person: str
    until: datetime
    source: Literal["rotation", "override"]
    override_id: str | None = None

    def describe(self) -> str:
        how = f"override {self.override_id}" if self.source == "override" else "rotation"
        return f"on call for {self.team}: {self.person} ({how}, until {self.until.isoformat()})"


def shift_at(rotation: Rotation, order: list[str], at: datetime) -> Shift:
    """The rotation's shift that contains ``at``. Shifts change at the handoff's wall-clock time in the
    rotation's zone, so a DST change makes one shift an hour shorter or longer, never moves the handoff."""
    zone = ZoneInfo(rotation.time_zone)
    local = at.astimezone(zone)
    day = local.date()
    if local.replace(tzinfo=None).time() < rotation.handoff:
        day -= timedelta(days=1)
    period = rotation.period_days
    n = (day - rotation.start).days // period

    def handoff(k: int) -> datetime:
        return datetime.combine(rotation.start + timedelta(days=k * period), rotation.handoff, zone)

    # a handoff inside a DST gap or overlap can sit an hour off the wall-clock guess: settle on the real shift
    while handoff(n) > at:
        n -= 1
    while handoff(n + 1) <= at:
        n += 1
    return Shift(order[n % len(order)], handoff(n), handoff(n + 1))


def upcoming_shifts(rotation: Rotation, order: list[str], at: datetime, count: int) -> list[Shift]:
    """The shift containing ``at`` and the ``count - 1`` after it."""
    shifts = [shift_at(rotation, order, at)]
    while len(shifts) < count:
        shifts.append(shift_at(rotation, order, shifts[-1].ends_at))
    return shifts


def on_call(team: str, config: TeamsConfig, overrides: Iterable[Override], at: datetime) -> OnCall | None:
    """Who is on call for ``team`` at ``at``: the newest override covering it, else the rotation, else nobody."""
    covering = [o for o in overrides if o.team == team and o.covers(at)]
    if covering:
        o = max(covering, key=lambda o: (o.created_at, o.override_id))
        return OnCall(team, o.person, o.ends_at, "override", o.override_id)
    spec = config.teams.get(team)
    if spec is None or spec.rotation is None:
        return None
    shift = shift_at(spec.rotation, spec.order(), at)
    return OnCall(team, shift.person, shift.ends_at, "rotation")
