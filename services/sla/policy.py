"""sla.yaml: the policies (acknowledge target with its escalation chain; resolve, first response and the update
interval beside it), calendars and customers' contracts, validated with file:line errors, and the targets a
policy sets for a priority. A customer's contract (``contracts``) picks the policy before the route's choice does.

The clocks that hold tickets to these policies are services/sla/clocks.py; what a due clock fires,
services/sla/firing.py; the outcomes the SLA metrics count, services/sla/outcomes.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.sla.calendar import CalendarConfig
from shared.infra.config import Duration

OWNER = "owner"
NEXT = "next"
"""An escalation level with ``team: next`` goes to the ticket's next level (after hypercare: the project's
implementation team), or to the owner when the ticket has none."""


class EscalationLevel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after: Duration = Field(description="time after the acknowledge deadline")
    team: str = Field(min_length=1, description="a team, 'owner' (the ticket's team) or 'next' (its next level)")
    lead: bool = Field(default=False, description="to that team's lead (teams.yaml) instead of its on-call person")


ALWAYS = "24x7"
"""The built-in calendar every policy uses unless it names another: every moment counts."""


class Repeat(BaseModel):
    """After the chain's last level, notify that level again every ``every``, at most ``limit`` times, until
    the ticket is acknowledged or resolved."""

    model_config = ConfigDict(extra="forbid")

    every: Duration
    limit: int = Field(ge=1, le=100)

    @field_validator("every")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("repeat.every must be positive")
        return value


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    acknowledge: dict[str, Duration] = Field(min_length=1, description="target per priority P1..P5")
    resolve: dict[str, Duration] = Field(
        default_factory=dict, description="resolve target per priority P1..P5; none: no resolve clock"
    )
    first_response: dict[str, Duration] = Field(
        default_factory=dict,
        description="feedback tickets: the first response to the reporter (a comment or a question) per priority",
    )
    update: dict[str, Duration] = Field(
        default_factory=dict, description="update interval per priority: the customer hears from us at least this often"
    )
    escalation: list[EscalationLevel] = Field(min_length=1)
    calendar: str = Field(
        default=ALWAYS, description="the calendar targets and escalation delays count in (sla.yaml calendars)"
    )
    warnings: list[float] = Field(
        default_factory=list, description="warn the owner when these shares of the target are used, e.g. [0.75, 0.9]"
    )
    repeat: Repeat | None = Field(default=None, description="repeat the last level until acknowledged")

    @field_validator("warnings")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        if any(not 0 < f < 1 for f in value):
            raise ValueError("warnings are shares of the target between 0 and 1, e.g. 0.75")
        if value != sorted(set(value)):
            raise ValueError("warnings must be distinct and in increasing order")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Policy:
        afters = [lvl.after for lvl in self.escalation]
        if afters != sorted(afters):
            raise ValueError("escalation levels must be in order of 'after'")
        return self


FIT_FROM = datetime(2026, 1, 5, tzinfo=UTC)
FIT_WITHIN = timedelta(days=5 * 365)
"""A policy's longest chain of working time must end within this long of a start on its calendar, or its clocks
could run out of calendar (the clocks look ten years ahead at most)."""


def longest_chain(policy: Policy) -> timedelta:
    """The most working time a ticket's clocks of this policy count at once: its longest target, then its last
    escalation level's delay and every repeat of it."""
    targets = [*policy.acknowledge.values(), *policy.resolve.values(), *policy.first_response.values()]
    targets += policy.update.values()
    repeats = policy.repeat.every * policy.repeat.limit if policy.repeat is not None else timedelta(0)
    return max(targets) + max(level.after for level in policy.escalation) + repeats


def unfitting(name: str, policy: Policy, calendar: CalendarConfig) -> str | None:
    """Why this policy's clocks would run out of its calendar (no working days, or targets of more working time
    than five years of it hold), or None."""
    if calendar.always:
        return None
    longest = longest_chain(policy)
    try:
        ends = calendar.calendar.add(FIT_FROM, longest)
    except (ValueError, OverflowError):
        ends = None
    if ends is None or ends - FIT_FROM > FIT_WITHIN:
        return (
            f"policies.{name}: its targets, escalation and repeats take {longest} of working time, more than five "
            f"years of calendar {policy.calendar!r} hold (days {calendar.days}, hours {calendar.hours})"
        )
    return None


class SlaConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(
        default=1,
        ge=1,
        description="the policies' version: raise it with each change; a clock keeps the one it started under",
    )
    calendars: dict[str, CalendarConfig] = Field(default_factory=dict)
    contracts: dict[str, str] = Field(
        default_factory=dict, description="customer -> policy: a customer's contract beats the route's policy"
    )
    policies: dict[str, Policy]

    @model_validator(mode="after")
    def _has_default(self) -> SlaConfig:
        if "default" not in self.policies:
            raise ValueError("a policy named 'default' is required (tickets whose policy is unknown use it)")
        unknown = [
            f"policies.{name}.calendar: no calendar {p.calendar!r}"
            for name, p in self.policies.items()
            if p.calendar != ALWAYS and p.calendar not in self.calendars
        ]
        unknown += [
            f"contracts.{customer}: no policy {name!r}"
            for customer, name in self.contracts.items()
            if name not in self.policies
        ]
        if unknown:
            raise ValueError("; ".join(unknown))
        too_long = [
            problem
            for name, p in self.policies.items()
            if p.calendar != ALWAYS and (problem := unfitting(name, p, self.calendars[p.calendar])) is not None
        ]
        if too_long:
            raise ValueError("; ".join(too_long))
        return self

    def calendar_for(self, policy: Policy) -> CalendarConfig:
        return self.calendars.get(policy.calendar) or CalendarConfig(always=True)

    def policy_for(self, name: str, customer: str | None = None) -> tuple[str, Policy]:
        """The policy a ticket runs under: its customer's contract if there is one, else the one its route
        named, else ``default``."""
        if customer is not None and customer in self.contracts:
            name = self.contracts[customer]
        if name in self.policies:
            return name, self.policies[name]
        return "default", self.policies["default"]


TargetKind = Literal["resolve", "first_response", "update"]
TARGET_KINDS: tuple[TargetKind, ...] = ("resolve", "first_response", "update")


def acknowledge_target(policy: Policy, priority: str) -> timedelta:
    if priority in policy.acknowledge:
        return policy.acknowledge[priority]
    # an unknown priority gets the loosest target the policy has, never none
    return max(policy.acknowledge.values())


def target_for(policy: Policy, kind: TargetKind, priority: str) -> timedelta | None:
    """None when the policy sets no such target; an unknown priority gets the loosest."""
    targets: dict[str, timedelta] = getattr(policy, kind)
    if not targets:
        return None
    return targets.get(priority, max(targets.values()))


# the ticket needs (a new) acknowledgement: a fresh acknowledge clock and escalation chain start; the resolve
# clock starts again only when the problem came back (reopened), not when it changed hands


# a response to the customer: it ends the first-response target; it, and the customer's reply, start the next
# update interval
