"""The SLA clock of one ticket and how ticket changes move it, as pure functions.

A clock is created when a ticket opens, holding a snapshot of its policy (deadline and escalation levels) and
sla.yaml's ``version``, so editing sla.yaml never rewrites a running clock. Acknowledge or resolve stops it;
reopen, unacknowledge and reassign restart it; a wait on the customer pauses it (``resume``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.sla.calendar import BusinessCalendar
from services.sla.policy import (
    TARGET_KINDS,
    Policy,
    SlaConfig,
    TargetKind,
    acknowledge_target,
    target_for,
)
from shared.events import Change, EventKind, Ticket, TicketEvent


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


_RESTARTS = {Change.reopened, Change.unacknowledged, Change.reassigned}


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
