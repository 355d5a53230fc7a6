"""sla.yaml and the acknowledge and resolve clocks, as pure functions.

A clock is created when a ticket opens, holding a snapshot of its policy (deadline and escalation levels) and
sla.yaml's ``version``, so editing sla.yaml never rewrites a running clock. A customer's contract (``contracts``)
picks the policy before the route's choice does. Acknowledge or resolve stops it. ``fire_due`` returns the
next escalation once its time has come, and the clock advanced past it; escalation ids are stable per ticket
and level, so a timer that fires again after a crash repeats the same escalation, which the notifier drops.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.sla.calendar import BusinessCalendar, CalendarConfig
from shared.config import Duration
from shared.events import Change, Escalation, Ticket, TicketEvent

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


class LevelSnapshot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    after_s: float
    team: str
    lead: bool = False
    due: datetime | None = Field(default=None, description="when it fires, in the policy's calendar")


class WarningSnapshot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    share: float
    due: datetime


class Clock(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ticket_id: str
    state: Literal["running", "stopped", "exhausted"]
    version: int
    started_version: int = Field(description="the ticket version that started this clock: one chain per start")
    started_at: datetime | None = Field(default=None, description="when the acknowledge clock started")
    policy: str
    policy_version: int = Field(default=1, description="sla.yaml's version when this clock started")
    deadline: datetime
    levels: list[LevelSnapshot]
    fired: int = 0
    warn_at: list[WarningSnapshot] = Field(default_factory=list, description="the pre-breach warnings, in order")
    warned: int = 0
    breached: bool = Field(default=False, description="the breach event at the deadline was emitted")
    paused_at: datetime | None = Field(default=None, description="waiting on the customer since then: no time counts")
    paused_s: float = Field(default=0.0, ge=0, description="wall-clock seconds spent paused, in all")
    resolve_started_version: int = Field(default=0, description="the ticket version that started the resolve clock")
    resolve_deadline: datetime | None = Field(default=None, description="resolve by then; None: no resolve target")
    resolve_warn_at: list[WarningSnapshot] = Field(default_factory=list)
    resolve_warned: int = 0
    resolve_breached: bool = False
    ticket: Ticket

    def _level_due(self) -> datetime | None:
        if self.fired >= len(self.levels):
            return None
        level = self.levels[self.fired]
        return level.due if level.due is not None else self.deadline + timedelta(seconds=level.after_s)

    def _warning_due(self) -> datetime | None:
        return self.warn_at[self.warned].due if self.warned < len(self.warn_at) else None

    def _acknowledge_due(self) -> datetime | None:
        if self.state != "running":
            return None
        breach = None if self.breached else self.deadline
        return min((d for d in (self._warning_due(), breach, self._level_due()) if d is not None), default=None)

    def _resolve_warning_due(self) -> datetime | None:
        if self.resolve_warned < len(self.resolve_warn_at):
            return self.resolve_warn_at[self.resolve_warned].due
        return None

    def _resolve_due(self) -> datetime | None:
        """The resolve clock runs until the ticket is resolved (acknowledging does not stop it)."""
        if self.resolve_deadline is None or self.ticket.state.value in {"resolved", "closed"}:
            return None
        breach = None if self.resolve_breached else self.resolve_deadline
        return min((d for d in (self._resolve_warning_due(), breach) if d is not None), default=None)

    @property
    def next_due(self) -> datetime | None:
        if self.paused_at is not None:
            return None
        dues = [d for d in (self._acknowledge_due(), self._resolve_due()) if d is not None]
        if not dues:
            return None
        due = min(dues)
        snoozed = self.ticket.snoozed_until
        return max(due, snoozed) if snoozed is not None else due


class ClockDue(BaseModel):
    """The sla timer's proposal that a ticket's clock is due; the clocks agent decides, in its transaction."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ticket_id: str
    due: datetime
    proposed_at: datetime


def acknowledge_target(policy: Policy, priority: str) -> timedelta:
    if priority in policy.acknowledge:
        return policy.acknowledge[priority]
    # an unknown priority gets the loosest target the policy has, never none
    return max(policy.acknowledge.values())


def resolve_target(policy: Policy, priority: str) -> timedelta | None:
    """None when the policy sets no resolve targets; an unknown priority gets the loosest."""
    if not policy.resolve:
        return None
    return policy.resolve.get(priority, max(policy.resolve.values()))


def _levels(policy: Policy, deadline: datetime, calendar: BusinessCalendar) -> list[LevelSnapshot]:
    """The chain as a snapshot: each level's time in the calendar, then the last level's repeats."""
    levels = [
        LevelSnapshot(
            after_s=lvl.after.total_seconds(), team=lvl.team, lead=lvl.lead, due=calendar.add(deadline, lvl.after)
        )
        for lvl in policy.escalation
    ]
    if policy.repeat is not None:
        last = policy.escalation[-1]
        for n in range(1, policy.repeat.limit + 1):
            after = last.after + n * policy.repeat.every
            levels.append(
                LevelSnapshot(
                    after_s=after.total_seconds(), team=last.team, lead=last.lead, due=calendar.add(deadline, after)
                )
            )
    return levels


def start_clock(
    ticket: Ticket, config: SlaConfig, started_at: datetime | None = None, resolve_from: Clock | None = None
) -> Clock:
    """A running acknowledge clock: its deadline and every escalation's time worked out now, in the policy's
    calendar (a business-hours policy never escalates at 3 a.m.), and kept as a snapshot. With it the resolve
    clock (when the policy sets resolve targets), started at the same moment, or carried over from
    ``resolve_from`` (a new acknowledge chain for the same problem does not restart the resolve target)."""
    name, policy = config.policy_for(ticket.policy, ticket.customer)
    calendar = config.calendar_for(policy).calendar
    start, target = started_at or ticket.opened_at, acknowledge_target(policy, ticket.priority)
    deadline = calendar.add(start, target)
    resolve: dict[str, object] = {}
    if resolve_from is not None:
        resolve = {
            "resolve_started_version": resolve_from.resolve_started_version,
            "resolve_deadline": resolve_from.resolve_deadline,
            "resolve_warn_at": resolve_from.resolve_warn_at,
            "resolve_warned": resolve_from.resolve_warned,
            "resolve_breached": resolve_from.resolve_breached,
        }
    elif (resolve_in := resolve_target(policy, ticket.priority)) is not None:
        resolve = {
            "resolve_started_version": ticket.version,
            "resolve_deadline": calendar.add(start, resolve_in),
            "resolve_warn_at": [
                WarningSnapshot(share=share, due=calendar.add(start, resolve_in * share)) for share in policy.warnings
            ],
        }
    return Clock(
        ticket_id=ticket.ticket_id,
        state="running",
        version=ticket.version,
        started_version=ticket.version,
        started_at=start,
        policy=name,
        policy_version=config.version,
        deadline=deadline,
        levels=_levels(policy, deadline, calendar),
        warn_at=[WarningSnapshot(share=share, due=calendar.add(start, target * share)) for share in policy.warnings],
        ticket=ticket,
        **resolve,
    )


_STOPS = {Change.acknowledged, Change.resolved, Change.closed}
# the ticket needs (a new) acknowledgement: a fresh acknowledge clock and escalation chain start; the resolve
# clock starts again only when the problem came back (reopened), not when it changed hands
_RESTARTS = {Change.reopened, Change.unacknowledged, Change.reassigned}


def on_ticket_event(clock: Clock | None, event: TicketEvent, config: SlaConfig) -> Clock | None:
    """The clock after a ticket event; None when there is nothing to track. Replays are no-ops."""
    ticket = event.ticket
    if clock is not None and ticket.version <= clock.version:
        return clock
    if clock is None:
        if ticket.state.value != "open":
            return None
        return start_clock(ticket, config)
    if event.change in _RESTARTS and ticket.state.value == "open":
        carried = None if event.change is Change.reopened else clock
        return start_clock(ticket, config, started_at=event.at, resolve_from=carried)
    update: dict[str, object] = {"version": ticket.version, "ticket": ticket}
    if event.change in _STOPS or ticket.state.value != "open":
        update["state"] = "stopped"
    elif ticket.waiting_on_customer and clock.paused_at is None:
        update["paused_at"] = event.at
    elif not ticket.waiting_on_customer and clock.paused_at is not None:
        _, policy = config.policy_for(clock.policy)
        return resume(clock, event.at, config.calendar_for(policy).calendar).model_copy(update=update)
    return clock.model_copy(update=update)


def finished(clock: Clock) -> bool:
    """A clock with nothing left to do for a ticket that is resolved or closed: it can be forgotten."""
    return clock.state != "running" and clock.ticket.state.value in {"resolved", "closed"}


def resume(clock: Clock, at: datetime, calendar: BusinessCalendar) -> Clock:
    """The clock after waiting on the customer from ``clock.paused_at`` until ``at``: every deadline, warning and
    level still ahead when it paused keeps the (calendar) time it had left, counted from ``at``."""
    paused_at = clock.paused_at
    if paused_at is None:
        return clock
    resumed = max(at, paused_at)

    def shift(due: datetime) -> datetime:
        return calendar.add(resumed, calendar.elapsed(paused_at, due)) if due > paused_at else due

    deadline = shift(clock.deadline)
    levels = [
        lvl.model_copy(
            update={"due": shift(lvl.due if lvl.due is not None else clock.deadline + timedelta(seconds=lvl.after_s))}
        )
        for lvl in clock.levels
    ]
    warn_at = [w.model_copy(update={"due": shift(w.due)}) for w in clock.warn_at]
    resolve_deadline = shift(clock.resolve_deadline) if clock.resolve_deadline is not None else None
    return clock.model_copy(
        update={
            "deadline": deadline,
            "levels": levels,
            "warn_at": warn_at,
            "resolve_deadline": resolve_deadline,
            "resolve_warn_at": [w.model_copy(update={"due": shift(w.due)}) for w in clock.resolve_warn_at],
            "paused_at": None,
            "paused_s": clock.paused_s + (resumed - paused_at).total_seconds(),
        }
    )


def _notice(
    clock: Clock, now: datetime, suffix: str, reason: str, which: str = "acknowledge", **fields: object
) -> Escalation:
    """A warning, breach or escalation of this clock start; ``suffix`` makes its id (and so its dedup) stable."""
    started = clock.started_version if which == "acknowledge" else clock.resolve_started_version
    return Escalation.model_validate(
        {
            "escalation_id": f"{clock.ticket_id}:{which}:{started}:{suffix}",
            "ticket_id": clock.ticket_id,
            "clock": which,
            "target_team": clock.ticket.team,
            "deadline": clock.deadline if which == "acknowledge" else clock.resolve_deadline,
            "fired_at": now,
            "reason": reason,
            "ticket": clock.ticket,
            "trace_id": f"sla-{clock.ticket_id}-{suffix.replace(':', '-')}",
            **fields,
        }
    )


def fire_due(clock: Clock, now: datetime) -> tuple[Escalation | None, Clock]:
    """The warning, breach or escalation that is due at ``now`` (earliest first), and the clock past it."""
    due = clock.next_due
    if due is None or due > now:
        return None, clock
    policy = f"{clock.policy} v{clock.policy_version}"
    acknowledge_due, resolve_due = clock._acknowledge_due(), clock._resolve_due()
    if resolve_due is not None and resolve_due <= now and (acknowledge_due is None or resolve_due < acknowledge_due):
        return _fire_resolve(clock, now, policy)
    if acknowledge_due is None or acknowledge_due > now:
        return None, clock
    return _fire_acknowledge(clock, now, policy)


def _fire_acknowledge(clock: Clock, now: datetime, policy: str) -> tuple[Escalation | None, Clock]:
    """The acknowledge clock's due warning, breach or escalation level, and the clock past it."""
    t = clock.ticket
    deadline = clock.deadline.isoformat()
    warning_due, level_due = clock._warning_due(), clock._level_due()
    # a warning only before the deadline: a late tick (a restart) goes straight to the breach
    if (
        warning_due is not None
        and warning_due <= now < clock.deadline
        and (level_due is None or warning_due <= level_due)
    ):
        n = clock.warned + 1
        share = clock.warn_at[clock.warned].share
        reason = f"{share:.0%} of the acknowledge target used; the deadline is {deadline} (policy {policy})"
        warning = _notice(clock, now, f"warning:{n}", reason, kind="warning", level=n)
        return warning, clock.model_copy(update={"warned": n})
    if not clock.breached and clock.deadline <= now and (level_due is None or clock.deadline <= level_due):
        reason = f"acknowledge target missed: not acknowledged by {deadline} (policy {policy})"
        breach = _notice(clock, now, "breach", reason, kind="breach", level=1)
        # warnings not yet sent when the deadline passed are moot
        return breach, clock.model_copy(update={"breached": True, "warned": len(clock.warn_at)})
    if level_due is None:
        return None, clock
    level = clock.fired + 1
    snap = clock.levels[clock.fired]
    team = {OWNER: t.team, NEXT: t.next_level or t.team}.get(snap.team, snap.team)
    reason = f"not acknowledged by {deadline} (policy {policy}, level {level})"
    escalation = _notice(clock, now, str(level), reason, level=level, target_team=team, to_lead=snap.lead)
    update: dict[str, object] = {"fired": level, "warned": len(clock.warn_at)}
    update["state"] = "running" if level < len(clock.levels) else "exhausted"
    return escalation, clock.model_copy(update=update)


def _fire_resolve(clock: Clock, now: datetime, policy: str) -> tuple[Escalation, Clock]:
    """The resolve clock's due warning (only before its deadline) or its breach, and the clock past it."""
    deadline = clock.resolve_deadline
    assert deadline is not None  # noqa: S101 - only called with a resolve clock due
    warning_due = clock._resolve_warning_due()
    if warning_due is not None and warning_due <= now < deadline:
        n = clock.resolve_warned + 1
        share = clock.resolve_warn_at[clock.resolve_warned].share
        reason = f"{share:.0%} of the resolve target used; the deadline is {deadline.isoformat()} (policy {policy})"
        warning = _notice(clock, now, f"warning:{n}", reason, "resolve", kind="warning", level=n)
        return warning, clock.model_copy(update={"resolve_warned": n})
    reason = f"resolve target missed: not resolved by {deadline.isoformat()} (policy {policy})"
    breach = _notice(clock, now, "breach", reason, "resolve", kind="breach", level=1)
    return breach, clock.model_copy(update={"resolve_breached": True, "resolve_warned": len(clock.resolve_warn_at)})


class Outcome(BaseModel):
    """What a ticket event settled, for the SLA panels: an acknowledgement (against the clock's deadline) or a
    resolution (from opening)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["acknowledged", "resolved"]
    seconds: float = Field(ge=0)
    within_target: bool | None = Field(
        default=None,
        description="by the deadline (acknowledgements; resolutions when the policy sets a resolve target)",
    )


def outcomes(before: Clock | None, event: TicketEvent) -> list[Outcome]:
    """The outcomes a (new, not replayed) ticket event settles, given the clock before it."""
    t = event.ticket
    if before is None or t.version <= before.version:
        return []
    out: list[Outcome] = []
    if before.state == "running" and event.change is Change.acknowledged:
        acked_at = t.acknowledged_at or event.at
        start = before.started_at or t.opened_at
        seconds = max((acked_at - start).total_seconds(), 0.0)
        out.append(Outcome(kind="acknowledged", seconds=seconds, within_target=acked_at <= before.deadline))
    if event.change is Change.resolved and t.resolved_at is not None:
        seconds = max((t.resolved_at - t.opened_at).total_seconds(), 0.0)
        deadline = before.resolve_deadline
        within = None if deadline is None else t.resolved_at <= deadline
        out.append(Outcome(kind="resolved", seconds=seconds, within_target=within))
    return out
