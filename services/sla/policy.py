"""sla.yaml and the SLA clocks (acknowledge with its escalation chain; resolve, first response and the update
interval beside it), as pure functions.

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
from shared.events import Change, Escalation, EventKind, Ticket, TicketEvent
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


TargetKind = Literal["resolve", "first_response", "update"]
TARGET_KINDS: tuple[TargetKind, ...] = ("resolve", "first_response", "update")
_MISSED = {
    "resolve": "resolve target missed: not resolved by {deadline}",
    "first_response": "first response target missed: no response to the reporter by {deadline}",
    "update": "update interval missed: the customer had no update by {deadline}",
}


class Target(BaseModel):
    """One deadline beside the acknowledge clock, with its pre-breach warnings: resolve, first response or the
    update interval. It breaches once and has no escalation chain (its breach notifies the owner)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    started_version: int = Field(description="the ticket version that started it: its notices' ids")
    deadline: datetime
    warn_at: list[WarningSnapshot] = Field(default_factory=list)
    warned: int = 0
    breached: bool = False

    def warning_due(self) -> datetime | None:
        return self.warn_at[self.warned].due if self.warned < len(self.warn_at) else None

    def due(self) -> datetime | None:
        breach = None if self.breached else self.deadline
        return min((d for d in (self.warning_due(), breach) if d is not None), default=None)


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
    targets: dict[TargetKind, Target] = Field(default_factory=dict, description="the running targets beside it")
    update_interval_s: float | None = Field(default=None, description="the policy's update interval, a snapshot")
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

    def _target_dues(self) -> dict[TargetKind, datetime]:
        """The targets run until the ticket is resolved (acknowledging does not stop them)."""
        if self.ticket.state.value in {"resolved", "closed"}:
            return {}
        return {kind: due for kind, target in self.targets.items() if (due := target.due()) is not None}

    @property
    def next_due(self) -> datetime | None:
        if self.paused_at is not None:
            return None
        dues = [d for d in (self._acknowledge_due(), *self._target_dues().values()) if d is not None]
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


def target_for(policy: Policy, kind: TargetKind, priority: str) -> timedelta | None:
    """None when the policy sets no such target; an unknown priority gets the loosest."""
    targets: dict[str, timedelta] = getattr(policy, kind)
    if not targets:
        return None
    return targets.get(priority, max(targets.values()))


def _target(
    start: datetime, within: timedelta, version: int, shares: list[float], calendar: BusinessCalendar
) -> Target:
    warn_at = [WarningSnapshot(share=share, due=calendar.add(start, within * share)) for share in shares]
    return Target(started_version=version, deadline=calendar.add(start, within), warn_at=warn_at)


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
    ticket: Ticket, config: SlaConfig, started_at: datetime | None = None, carry: Clock | None = None
) -> Clock:
    """A running acknowledge clock: its deadline and every escalation's time worked out now, in the policy's
    calendar (a business-hours policy never escalates at 3 a.m.), and kept as a snapshot. With it the targets
    the policy sets (resolve; first response for feedback; the update interval), started at the same moment, or
    carried over from ``carry`` (a new acknowledge chain for the same problem does not restart them)."""
    name, policy = config.policy_for(ticket.policy, ticket.customer)
    calendar = config.calendar_for(policy).calendar
    start, target = started_at or ticket.opened_at, acknowledge_target(policy, ticket.priority)
    deadline = calendar.add(start, target)
    interval = target_for(policy, "update", ticket.priority)
    targets: dict[TargetKind, Target] = {}
    if carry is not None:
        targets = dict(carry.targets)
    else:
        for kind in TARGET_KINDS:
            within = target_for(policy, kind, ticket.priority)
            if within is not None and (kind != "first_response" or ticket.kind is EventKind.feedback):
                targets[kind] = _target(start, within, ticket.version, policy.warnings, calendar)
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
        targets=targets,
        update_interval_s=interval.total_seconds() if interval is not None else None,
    )


_STOPS = {Change.acknowledged, Change.resolved, Change.closed}
# the ticket needs (a new) acknowledgement: a fresh acknowledge clock and escalation chain start; the resolve
# clock starts again only when the problem came back (reopened), not when it changed hands
_RESTARTS = {Change.reopened, Change.unacknowledged, Change.reassigned}


# a response to the customer: it ends the first-response target; it, and the customer's reply, start the next
# update interval
_RESPONSES = {Change.commented, Change.waiting_on_customer}
_UPDATE_RESTARTS = {*_RESPONSES, Change.customer_replied}


def on_ticket_event(clock: Clock | None, event: TicketEvent, config: SlaConfig) -> Clock | None:
    """The clock after a ticket event; None when there is nothing to track. Replays are no-ops."""
    ticket = event.ticket
    if clock is not None and ticket.version <= clock.version:
        return clock
    if clock is None:
        if ticket.state.value != "open":
            return None
        started = start_clock(ticket, config)
        if event.workaround and event.notify_reporter:  # the known issue's workaround went out: a first response
            started = started.model_copy(update={"targets": _without(started.targets, "first_response")})
        return started
    if event.change in _RESTARTS and ticket.state.value == "open":
        carried = None if event.change is Change.reopened else clock
        return start_clock(ticket, config, started_at=event.at, carry=carried)
    update: dict[str, object] = {"version": ticket.version, "ticket": ticket}
    if not ticket.waiting_on_customer and clock.paused_at is not None:
        clock = resume(clock, event.at, _calendar(config, clock))
    targets = clock.targets
    if event.change in _RESPONSES:
        targets = _without(targets, "first_response")
    if event.change in _UPDATE_RESTARTS and "update" in targets and clock.update_interval_s is not None:
        within, shares = timedelta(seconds=clock.update_interval_s), [w.share for w in targets["update"].warn_at]
        update_target = _target(event.at, within, ticket.version, shares, _calendar(config, clock))
        targets = {**targets, "update": update_target}
    update["targets"] = targets
    if event.change in _STOPS or ticket.state.value != "open":
        update["state"] = "stopped"
    if ticket.waiting_on_customer and clock.paused_at is None:
        update["paused_at"] = event.at
    return clock.model_copy(update=update)


def _calendar(config: SlaConfig, clock: Clock) -> BusinessCalendar:
    """The calendar of the clock's policy; looked up only by the events that move a deadline."""
    _, policy = config.policy_for(clock.policy)
    return config.calendar_for(policy).calendar


def _without(targets: dict[TargetKind, Target], kind: TargetKind) -> dict[TargetKind, Target]:
    return {k: t for k, t in targets.items() if k != kind}


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
    targets = {
        kind: t.model_copy(
            update={
                "deadline": shift(t.deadline),
                "warn_at": [w.model_copy(update={"due": shift(w.due)}) for w in t.warn_at],
            }
        )
        for kind, t in clock.targets.items()
    }
    return clock.model_copy(
        update={
            "deadline": deadline,
            "levels": levels,
            "warn_at": warn_at,
            "targets": targets,
            "paused_at": None,
            "paused_s": clock.paused_s + (resumed - paused_at).total_seconds(),
        }
    )


def _notice(
    clock: Clock,
    now: datetime,
    suffix: str,
    reason: str,
    target: tuple[TargetKind, Target] | None = None,
    **fields: object,
) -> Escalation:
    """A warning, breach or escalation of this clock start (of ``target``'s start, for one of the targets);
    ``suffix`` makes its id (and so its dedup) stable."""
    which, started = (
        ("acknowledge", clock.started_version) if target is None else (target[0], target[1].started_version)
    )
    return Escalation.model_validate(
        {
            "escalation_id": f"{clock.ticket_id}:{which}:{started}:{suffix}",
            "ticket_id": clock.ticket_id,
            "clock": which,
            "target_team": clock.ticket.team,
            "deadline": clock.deadline if target is None else target[1].deadline,
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
    acknowledge_due, target_dues = clock._acknowledge_due(), clock._target_dues()
    if target_dues:
        kind, target_due = min(target_dues.items(), key=lambda item: item[1])
        if target_due <= now and (acknowledge_due is None or target_due < acknowledge_due):
            return _fire_target(clock, kind, now, policy)
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


def _fire_target(clock: Clock, kind: TargetKind, now: datetime, policy: str) -> tuple[Escalation, Clock]:
    """A target's due warning (only before its deadline) or its breach, and the clock past it."""
    target = clock.targets[kind]
    deadline = target.deadline.isoformat()
    label = kind.replace("_", " ")
    warning_due = target.warning_due()
    if warning_due is not None and warning_due <= now < target.deadline:
        n = target.warned + 1
        share = target.warn_at[target.warned].share
        reason = f"{share:.0%} of the {label} target used; the deadline is {deadline} (policy {policy})"
        notice = _notice(clock, now, f"warning:{n}", reason, (kind, target), kind="warning", level=n)
        after = target.model_copy(update={"warned": n})
    else:
        reason = f"{_MISSED[kind].format(deadline=deadline)} (policy {policy})"
        notice = _notice(clock, now, "breach", reason, (kind, target), kind="breach", level=1)
        after = target.model_copy(update={"breached": True, "warned": len(target.warn_at)})
    return notice, clock.model_copy(update={"targets": {**clock.targets, kind: after}})


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
        resolve = before.targets.get("resolve")
        within = None if resolve is None else t.resolved_at <= resolve.deadline
        out.append(Outcome(kind="resolved", seconds=seconds, within_target=within))
    return out
