"""Grouping events into tickets and the ticket lifecycle, as pure functions.

One input event yields at most one ticket event: faust publishes the messages sent while handling one input
(attached to its offset) in no particular order, so two ticket events from one input could be seen reversed.

Step 1 (keyed by dedup key): ``assign`` maps an event to its open ticket, or to a new ticket id derived from
the event id (so a replayed event lands on the same ticket). Step 2 (keyed by ticket id, the single writer):
``apply_event`` and ``apply_command`` turn the ticket record into its next version and the ticket events that
describe the change. An invalid command is not dropped: it becomes a ``rejected`` ticket event with the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.router.rules import FlapPolicy, RouteDecision, event_labels
from shared.events import Action, Change, Command, EventStatus, InboundEvent, Ticket, TicketEvent, TicketState
from shared.infra.ids import short_hash
from shared.rules.oncall import OnCall
from shared.streaming.codec import DecodeError, decode

SEEN_LIMIT = 256
TICKET_NAMESPACE = uuid.UUID("0b6f3c1e-5a1f-4c9e-8f0e-2d9c3a7b5e41")


class TicketRecord(BaseModel):
    """The router's working state for one ticket: the ticket and the recent ids it has already applied."""

    model_config = ConfigDict(extra="forbid")

    ticket: Ticket
    seen: list[str] = Field(default_factory=list)

    def has_seen(self, message_id: str) -> bool:
        return message_id in self.seen

    def remember(self, message_id: str) -> list[str]:
        return [*self.seen[-(SEEN_LIMIT - 1) :], message_id]


class KeyState(BaseModel):
    """What a dedup key points at: its latest ticket, and when that ticket was resolved (if it is)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ticket_id: str
    resolved_at: datetime | None = None


class KeyUpdate(BaseModel):
    """From the ticket's single writer back to the dedup-key map (keyed by dedup key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dedup_key: str
    ticket_id: str
    state: TicketState
    at: datetime


@dataclass(frozen=True, slots=True)
class Assignment:
    ticket_id: str | None
    """None: nothing to do (a resolution for which no ticket exists)."""
    key_state: KeyState | None
    """What the dedup key points at afterwards."""


def new_ticket_id(event_id: str) -> str:
    return "tl-" + uuid.uuid5(TICKET_NAMESPACE, event_id).hex[:16]


def assign(current: KeyState | None, event: InboundEvent, reopen_window: timedelta) -> Assignment:
    """Which ticket an event belongs to. A problem that fires again within ``reopen_window`` of its ticket's
    resolution goes to that ticket (which reopens); later, it starts a new ticket."""
    if event.status is not EventStatus.firing:
        return Assignment(current.ticket_id if current else None, current)
    if current is not None and (
        current.resolved_at is None or event.received_at - current.resolved_at <= reopen_window
    ):
        return Assignment(current.ticket_id, current)
    fresh = KeyState(ticket_id=new_ticket_id(event.event_id))
    return Assignment(fresh.ticket_id, fresh)


def apply_key_update(current: KeyState | None, update: KeyUpdate) -> KeyState | None:
    """The key's state after its ticket changed; updates about a ticket the key no longer points at are stale."""
    if current is None or current.ticket_id != update.ticket_id:
        return current
    if update.state is TicketState.closed:
        return None
    if update.state is TicketState.resolved:
        return current.model_copy(update={"resolved_at": update.at})
    return current.model_copy(update={"resolved_at": None})


def key_update_for(event: TicketEvent) -> KeyUpdate | None:
    """The changes the dedup-key map has to hear about."""
    if event.change not in (Change.resolved, Change.closed, Change.reopened):
        return None
    t = event.ticket
    return KeyUpdate(dedup_key=t.dedup_key, ticket_id=t.ticket_id, state=t.state, at=event.at)


def _ticket_event(ticket: Ticket, change: Change, actor: str, reason: str, at: datetime, trace: str) -> TicketEvent:
    return TicketEvent(
        change_id=f"{ticket.ticket_id}:{ticket.version}",
        change=change,
        actor=actor,
        reason=reason,
        at=at,
        ticket=ticket,
        trace_id=trace,
    )


Status = Literal["firing", "resolved"]


@dataclass(frozen=True, slots=True)
class Member:
    """What a ticket knows of one alert in its group: its state, the last event applied for it (so an exact
    repeat is dropped however many alerts the group has), and when its state last changed (flap detection)."""

    status: Status
    event_id: str
    changes: tuple[datetime, ...] = ()

    def encode(self) -> bytes:
        times = ",".join(f"{c.timestamp():.6f}" for c in self.changes)
        return f"{self.status}\x1f{self.event_id}\x1f{times}".encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> Member | None:
        if raw is None:
            return None
        status, _, rest = raw.decode().partition("\x1f")
        event_id, _, times = rest.partition("\x1f")
        changes = tuple(datetime.fromtimestamp(float(t), UTC) for t in times.split(",") if t)
        return cls("resolved" if status == "resolved" else "firing", event_id, changes)

    def changed(self, status: Status, event_id: str, now: datetime, flap: FlapPolicy | None) -> Member:
        """This alert after an event that moved it to ``status``; state changes are kept for flap detection."""
        if flap is None or status == self.status:
            return Member(status, event_id, self.changes)
        recent = tuple(c for c in self.changes if now - c < flap.within)[-(flap.changes - 1) :]
        return Member(status, event_id, (*recent, now))

    def flapping(self, flap: FlapPolicy | None) -> bool:
        return flap is not None and len(self.changes) >= flap.changes


class TicketInput(BaseModel):
    """An event on its way to its ticket's single writer, with the group it was assigned to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    group_key: str
    event: InboundEvent
    decision: RouteDecision | None = None
    """The routing decision made when the event was assigned (services/router/decision.py); None only in
    records written before it was carried, which are decided again."""


def grouped_input(key: str, value: bytes) -> TicketInput:
    """A record of the grouped topic: the event with its group and routing decision. Records written before the
    decision was carried hold the bare event (keyed by its group), and are decided again at the ticket."""
    try:
        return decode(TicketInput, value)
    except DecodeError:
        return TicketInput(group_key=key, event=decode(InboundEvent, value))


def reassign_on_call(command: Command, found: OnCall | None) -> Command:
    """Reassigning to a team (no person named) reassigns to whoever is on call for it, if anyone is."""
    if command.action is not Action.reassign or command.person or not command.team or found is None:
        return command
    reason = f"{command.reason}; {found.describe()}" if command.reason else found.describe()
    return command.model_copy(update={"person": found.person, "reason": reason})


def group_key(event: InboundEvent, decision: RouteDecision) -> str:
    """One ticket per alert (its dedup key) unless the route groups by labels: then one per route and values."""
    if not decision.group_by:
        return event.dedup_key
    labels = event_labels(event)
    return "group/" + short_hash(decision.rule, *(f"{k}={labels.get(k, '')}" for k in sorted(decision.group_by)))


def _open(ticket_id: str, group: str, event: InboundEvent, decision: RouteDecision, now: datetime) -> Ticket:
    return Ticket(
        ticket_id=ticket_id,
        dedup_key=group,
        kind=event.kind,
        source=event.source,
        state=TicketState.open,
        summary=event.summary,
        severity=event.severity,
        priority=decision.priority,
        team=decision.team,
        person=decision.person,
        watchers=list(decision.watchers),
        project=decision.project,
        customer=decision.customer,
        phase=decision.phase,
        next_level=decision.next_level,
        muted_until=decision.muted_until,
        channels=list(decision.channels),
        policy=decision.policy,
        rule=decision.rule,
        labels=event.labels,
        occurrences=1,
        first_seen=event.occurred_at,
        last_seen=event.occurred_at,
        opened_at=now,
        version=1,
        # with group_wait the first notification waits (collecting the storm); else the opening is it
        notify_at=now + decision.group_wait if decision.group_wait else None,
        notified_alerts=0 if decision.group_wait else 1,
        notified_at=None if decision.group_wait else now,
    )


def apply_event(
    record: TicketRecord | None,
    ticket_id: str,
    group: str,
    event: InboundEvent,
    member: Member | None,
    decision: RouteDecision,
    now: datetime,
    flap: FlapPolicy | None = None,
) -> tuple[TicketRecord | None, list[TicketEvent], Member | None]:
    """The ticket after an event of one of its alerts (``member`` is what the ticket knew of that alert).

    New alerts and repeats count as occurrences; a ticket resolves when its last firing alert resolves; it
    reopens only when the problem recurs (a new alert, or a resolved one firing again), not on a repeat.
    With ``flap``, an alert that changes state too often makes its ticket flapping: it is not resolved (so it
    does not reopen either) until nothing has changed for ``flap.stable_for`` (see ``tick``).
    """
    firing = event.status is EventStatus.firing
    if record is not None and (record.has_seen(event.event_id) or (member and member.event_id == event.event_id)):
        return record, [], member
    if record is None:
        if not firing:
            return None, [], member
        ticket = _open(ticket_id, group, event, decision, now)
        out = _ticket_event(ticket, Change.opened, event.source, decision.explain(), now, event.trace_id)
        return TicketRecord(ticket=ticket, seen=[event.event_id]), [out], Member("firing", event.event_id)
    if event.status is EventStatus.firing:
        return _fired(record, event, member, now, flap, decision.group_interval)
    if event.status is EventStatus.resolved:
        return _resolved(record, event, member, now, flap)
    return _acknowledged(record, event, member, now)


Outcome = tuple[TicketRecord | None, list[TicketEvent], Member | None]


def _changed(
    record: TicketRecord, event: InboundEvent, update: dict[str, object], change: Change, reason: str, now: datetime
) -> tuple[TicketRecord, list[TicketEvent]]:
    ticket = record.ticket.model_copy(update={**update, "version": record.ticket.version + 1})
    out = _ticket_event(ticket, change, event.source, reason, now, event.trace_id)
    return TicketRecord(ticket=ticket, seen=record.remember(event.event_id)), [out]


def _unchanged(record: TicketRecord, event: InboundEvent, member: Member | None) -> Outcome:
    return record.model_copy(update={"seen": record.remember(event.event_id)}), [], member


def _flap_update(t: Ticket, after: Member, now: datetime, flap: FlapPolicy | None) -> tuple[dict[str, object], str]:
    """Field updates and a note when this state change keeps or makes the ticket flapping."""
    if flap is None or not (t.flapping or after.flapping(flap)):
        return {}, ""
    stable_at = now + flap.stable_for
    note = (
        f"held: flapping, stable at {stable_at.isoformat()} if nothing changes"
        if t.flapping
        else f"flapping: an alert changed state {len(after.changes)} times within {flap.within}; resolve held until "
        f"nothing changes for {flap.stable_for}"
    )
    return {"flapping": True, "stable_at": stable_at}, note


def _fired(
    record: TicketRecord,
    event: InboundEvent,
    member: Member | None,
    now: datetime,
    flap: FlapPolicy | None,
    group_interval: timedelta | None = None,
) -> Outcome:
    t = record.ticket
    joined, refired = member is None, member is not None and member.status == "resolved"
    after = (member or Member("firing", event.event_id)).changed("firing", event.event_id, now, flap)
    update: dict[str, object] = {
        "occurrences": t.occurrences + 1,
        "last_seen": max(t.last_seen, event.occurred_at),
        "alerts": t.alerts + joined,
        "alerts_firing": t.alerts_firing + (joined or refired),
    }
    flap_update, note = _flap_update(t, after, now, flap) if refired else ({}, "")
    update.update(flap_update)
    if joined and group_interval is not None and t.notify_at is None and t.notified_at is not None:
        # people hear about joining alerts at most once per group_interval
        update["notify_at"] = max(now, t.notified_at + group_interval)
    if t.state is TicketState.resolved and (joined or refired):
        change, reason = Change.reopened, "the problem recurred"
        update.update(_reopen(t))
        # the reopening tells people about the ticket as it is now
        update.update({"notified_alerts": t.alerts + joined, "notified_at": now, "notify_at": None})
    else:
        change = Change.occurred
        reason = "another alert joined" if joined else "fired again" if refired else "occurred again"
        if t.state is TicketState.closed:
            reason += " after the ticket was closed"
    if note and not t.flapping:
        change = Change.flapping if change is Change.occurred else change
    return *_changed(record, event, update, change, reason + (f"; {note}" if note else ""), now), after


def _acknowledged(record: TicketRecord, event: InboundEvent, member: Member | None, now: datetime) -> Outcome:
    if record.ticket.state is not TicketState.open:
        return _unchanged(record, event, member)
    update: dict[str, object] = {"state": TicketState.acknowledged, "acknowledged_at": now}
    return *_changed(record, event, update, Change.acknowledged, "acknowledged at the source", now), member


def _resolved(
    record: TicketRecord, event: InboundEvent, member: Member | None, now: datetime, flap: FlapPolicy | None
) -> Outcome:
    t = record.ticket
    if member is None or member.status != "firing":
        return _unchanged(record, event, member)
    after = member.changed("resolved", event.event_id, now, flap)
    still_firing = max(t.alerts_firing - 1, 0)
    update: dict[str, object] = {"alerts_firing": still_firing}
    flap_update, note = _flap_update(t, after, now, flap)
    update.update(flap_update)
    if note:
        change = Change.alert_resolved if t.flapping else Change.flapping
        reason = f"{still_firing} of {t.alerts} alerts still firing; {note}"
    elif still_firing == 0 and t.state in (TicketState.open, TicketState.acknowledged):
        update.update({"state": TicketState.resolved, "resolved_at": now})
        change = Change.resolved
        reason = "resolved by the source" + (f" (all {t.alerts} alerts)" if t.alerts > 1 else "")
    else:
        change, reason = Change.alert_resolved, f"{still_firing} of {t.alerts} alerts still firing"
    return *_changed(record, event, update, change, reason, now), after


def _settle(record: TicketRecord, command: Command, now: datetime) -> tuple[TicketRecord, list[TicketEvent]]:
    """A flapping ticket whose alerts have not changed until ``stable_at`` is stable again: resolved if nothing
    fires any more, else simply open."""
    t = record.ticket
    update: dict[str, object] = {"flapping": False, "stable_at": None, "version": t.version + 1}
    reason = "stable again: no state change since the flapping"
    change = Change.stable
    if t.alerts_firing == 0 and t.state in _ACTIVE:
        update.update({"state": S.resolved, "resolved_at": now})
        change, reason = Change.resolved, "resolved by the source, stable after flapping"
    ticket = t.model_copy(update=update)
    out = _ticket_event(ticket, change, command.actor, reason, now, command.trace_id)
    return TicketRecord(ticket=ticket, seen=record.remember(command.command_id)), [out]


def _group_notice(record: TicketRecord, command: Command, now: datetime) -> tuple[TicketRecord, list[TicketEvent]]:
    """group_wait or group_interval is over: one notification about the alerts collected meanwhile."""
    t = record.ticket
    seen = record.remember(command.command_id)
    done: dict[str, object] = {"notify_at": None}
    joined = t.alerts - t.notified_alerts
    first = t.notified_at is None
    if t.state not in _ACTIVE or (not first and joined <= 0):
        # resolved meanwhile (its resolution told people), or nothing new: nothing to send
        return TicketRecord(ticket=t.model_copy(update=done), seen=seen), []
    done.update({"notified_alerts": t.alerts, "notified_at": now, "version": t.version + 1})
    firing = f"{t.alerts_firing} firing"
    if first:
        change, reason = Change.group_notified, f"group_wait over: {t.alerts} alerts ({firing})"
    else:
        change = Change.alerts_joined
        reason = f"{joined} alerts joined since the last notification ({t.alerts} in all, {firing})"
    ticket = t.model_copy(update=done)
    return TicketRecord(ticket=ticket, seen=seen), [
        _ticket_event(ticket, change, command.actor, reason, now, command.trace_id)
    ]


def timer_due(ticket: Ticket) -> datetime | None:
    """When the router's timer next has something to do for this ticket (None: nothing)."""
    due = [d for d in (ticket.stable_at if ticket.flapping else None, ticket.notify_at) if d is not None]
    return min(due) if due else None


def tick(record: TicketRecord, command: Command, now: datetime) -> tuple[TicketRecord, list[TicketEvent]]:
    """What is due for a ticket when the router's timer ticks: a flapping ticket settles, or a grouped
    notification goes out (one at a time: one input makes at most one ticket event). Early or stale ticks change
    nothing."""
    t = record.ticket
    if t.flapping and t.stable_at is not None and t.stable_at <= now:
        return _settle(record, command, now)
    if t.notify_at is not None and t.notify_at <= now:
        return _group_notice(record, command, now)
    return record.model_copy(update={"seen": record.remember(command.command_id)}), []


def tick_command(ticket_id: str, due: datetime, now: datetime) -> Command:
    """The router timer's command for a ticket with something due (one id per due time)."""
    return Command(
        command_id=f"tick:{ticket_id}:{due.timestamp():.6f}",
        ticket_id=ticket_id,
        action=Action.tick,
        actor="router-timer",
        issued_at=now,
        trace_id=f"tick-{ticket_id}",
    )


def with_known_issue(
    record: TicketRecord,
    opened: TicketEvent,
    issue_id: str,
    title: str,
    workaround: str,
    *,
    reply_to_reporter: bool,
) -> tuple[TicketRecord, TicketEvent]:
    """The opening of a report that matches a known issue of its project, carrying the workaround.

    It rides on the ``opened`` event rather than a second one: faust publishes the messages sent for one input
    in no particular order, so one input event makes at most one ticket event.
    """
    ticket = record.ticket.model_copy(update={"known_issue": issue_id})
    text = f"known issue {issue_id} ({title}). Workaround: {workaround}"
    event = opened.model_copy(update={"ticket": ticket, "workaround": text, "notify_reporter": reply_to_reporter})
    return record.model_copy(update={"ticket": ticket}), event


S = TicketState
_ACTIVE = frozenset({S.open, S.acknowledged})
_ANY = frozenset(TicketState)
TRANSITIONS: dict[Action, tuple[frozenset[TicketState], Change]] = {
    Action.acknowledge: (frozenset({S.open}), Change.acknowledged),
    Action.unacknowledge: (frozenset({S.acknowledged}), Change.unacknowledged),
    Action.resolve: (_ACTIVE, Change.resolved),
    Action.close: (frozenset({S.resolved}), Change.closed),
    Action.reopen: (frozenset({S.resolved, S.closed}), Change.reopened),
    Action.reassign: (_ACTIVE, Change.reassigned),
    Action.comment: (_ANY, Change.commented),
    Action.snooze: (_ACTIVE, Change.snoozed),
    Action.set_priority: (_ACTIVE | {S.resolved}, Change.priority_changed),
    Action.wait_on_customer: (_ACTIVE, Change.waiting_on_customer),
    Action.customer_replied: (_ACTIVE, Change.customer_replied),
    Action.tick: (_ANY, Change.stable),
}
"""Which states each action is allowed in, and the change it records. Anything else is rejected."""


Effect = tuple[dict[str, object], str] | str
"""(field updates, description) for an allowed command, or why it is refused."""


def _reassign(t: Ticket, cmd: Command, _now: datetime) -> Effect:
    team = cmd.team or t.team
    person = cmd.person if cmd.person else (None if cmd.team else t.person)
    if (team, person) == (t.team, t.person):
        return "it is already assigned there"
    # the new owner has to acknowledge it again
    return {"team": team, "person": person, "state": S.open, "acknowledged_at": None}, (
        f"reassigned to {person + ' (' + team + ')' if person else team}"
    )


def _snooze(_t: Ticket, cmd: Command, now: datetime) -> Effect:
    if cmd.until is None or cmd.until <= now:
        return "snooze 'until' must be in the future"
    return {"snoozed_until": cmd.until}, f"snoozed until {cmd.until.isoformat()}"


def _set_priority(t: Ticket, cmd: Command, _now: datetime) -> Effect:
    if cmd.priority == t.priority:
        return f"the priority is already {t.priority}"
    return {"priority": cmd.priority}, f"priority {t.priority} -> {cmd.priority}"


def _wait(t: Ticket, _cmd: Command, _now: datetime) -> Effect:
    return (
        "it is already waiting on the customer"
        if t.waiting_on_customer
        else (
            {"waiting_on_customer": True},
            "waiting on the customer",
        )
    )


def _replied(t: Ticket, _cmd: Command, _now: datetime) -> Effect:
    return (
        "it is not waiting on the customer"
        if not t.waiting_on_customer
        else (
            {"waiting_on_customer": False},
            "the customer replied",
        )
    )


EFFECTS: dict[Action, Callable[[Ticket, Command, datetime], Effect]] = {
    Action.acknowledge: lambda _t, _c, now: ({"state": S.acknowledged, "acknowledged_at": now}, "acknowledged"),
    Action.unacknowledge: lambda _t, _c, _n: ({"state": S.open, "acknowledged_at": None}, "acknowledgement withdrawn"),
    Action.resolve: lambda _t, _c, now: (
        {
            "state": S.resolved,
            "resolved_at": now,
            "waiting_on_customer": False,
            "snoozed_until": None,
            "flapping": False,
            "stable_at": None,
        },
        "resolved",
    ),
    Action.close: lambda _t, _c, now: ({"state": S.closed, "closed_at": now}, "closed"),
    Action.reopen: lambda t, _c, _n: (_reopen(t), "reopened"),
    Action.reassign: _reassign,
    Action.comment: lambda _t, _c, _n: ({}, "comment"),
    Action.snooze: _snooze,
    Action.set_priority: _set_priority,
    Action.wait_on_customer: _wait,
    Action.customer_replied: _replied,
    Action.tick: lambda _t, _c, _n: "tick is the router's own",
}


def _reopen(t: Ticket) -> dict[str, object]:
    return {
        "state": S.open,
        "acknowledged_at": None,
        "resolved_at": None,
        "closed_at": None,
        "reopened": t.reopened + 1,
    }


def apply_command(record: TicketRecord, command: Command, now: datetime) -> tuple[TicketRecord, list[TicketEvent]]:
    """The next version of the ticket after a command; a refused command is recorded as ``rejected``."""
    if record.has_seen(command.command_id):
        return record, []
    if command.action is Action.tick:
        return tick(record, command, now)
    t = record.ticket
    seen = record.remember(command.command_id)
    allowed, change = TRANSITIONS[command.action]
    effect = (
        EFFECTS[command.action](t, command, now)
        if t.state in allowed
        else f"cannot {command.action.value.replace('_', ' ')} a ticket that is {t.state.value}"
    )
    if isinstance(effect, str):
        ticket = t.model_copy(update={"version": t.version + 1})
        out = _ticket_event(ticket, Change.rejected, command.actor, effect, now, command.trace_id)
        return TicketRecord(ticket=ticket, seen=seen), [out]
    update, description = effect
    last = f"{change.value} by {command.actor} at {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    ticket = t.model_copy(update={**update, "last_action": last, "version": t.version + 1})
    reason = (
        command.reason
        if command.action is Action.comment
        else description + (f": {command.reason}" if command.reason else "")
    )
    out = _ticket_event(ticket, change, command.actor, reason, now, command.trace_id)
    return TicketRecord(ticket=ticket, seen=seen), [out]
