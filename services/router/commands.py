"""The command state machine of a ticket: which actions each state allows (``TRANSITIONS``), what each does
(``EFFECTS``), and the router's own timer ticks (flapping settles, grouped notifications due). An invalid command
is not dropped: it becomes a ``rejected`` ticket event with the reason. Pure."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from services.router.lifecycle import TicketRecord, reopened_fields, ticket_event
from services.router.rules import RouteDecision
from shared.events import Action, Change, Command, Ticket, TicketEvent, TicketState
from shared.rules.oncall import OnCall
from shared.rules.satisfaction import rating_text, survey_refusal
from shared.rules.workarounds import said_text


def reassign_on_call(command: Command, found: OnCall | None) -> Command:
    """Reassigning to a team (no person named) reassigns to whoever is on call for it, if anyone is."""
    if command.action is not Action.reassign or command.person or not command.team or found is None:
        return command
    reason = f"{command.reason}; {found.describe()}" if command.reason else found.describe()
    return command.model_copy(update={"person": found.person, "reason": reason})


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
    out = ticket_event(ticket, change, command.actor, reason, now, command.trace_id)
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
        ticket_event(ticket, change, command.actor, reason, now, command.trace_id)
    ]


def timer_due(ticket: Ticket) -> datetime | None:
    """When the router's timer next has something to do for this ticket (None: nothing)."""
    handover = ticket.phase_until if ticket.state in _ACTIVE else None
    due = [d for d in (ticket.stable_at if ticket.flapping else None, ticket.notify_at, handover) if d is not None]
    return min(due) if due else None


def handover_due(ticket: Ticket, now: datetime, ends: datetime | None = None) -> bool:
    """Whether an active ticket's project phase (hypercare) has ended: it moves to operations now. ``ends``: the
    project's end of hypercare as configured now, which may have been moved earlier since the ticket opened."""
    if ticket.state not in _ACTIVE or ticket.phase_until is None:
        return False
    return ticket.phase_until <= now or (ends is not None and ends <= now)


def handover_reason_prefix(project: str | None) -> str:
    """How a handover's reassignment starts on the timeline (the handover watch finds the moves by it)."""
    return f"handover: hypercare of project {project} ended"


def hand_over(
    record: TicketRecord, command: Command, decision: RouteDecision, now: datetime
) -> tuple[TicketRecord, list[TicketEvent]]:
    """An active ticket at the end of its project's hypercare: owner, watchers and next level as a new ticket of
    the project gets them now (``decision``, made for the ticket's labels at the phase's end), to be acknowledged
    again by its new owner; recorded as a reassignment whose reason says it is the handover."""
    t = record.ticket
    if decision.phase == t.phase and (decision.team, decision.person) == (t.team, t.person):
        # the phase was extended (or the project moved) since the ticket opened: nothing to hand over yet
        return TicketRecord(ticket=t.model_copy(update={"phase_until": decision.phase_until}), seen=record.seen), []
    before = f"{t.person} ({t.team})" if t.person else t.team
    after = f"{decision.person} ({decision.team})" if decision.person else decision.team
    ends = t.phase_until.date().isoformat() if t.phase_until else "now"
    update: dict[str, object] = {
        "team": decision.team,
        "person": decision.person,
        "watchers": list(decision.watchers),
        "next_level": decision.next_level,
        "phase": decision.phase,
        "phase_until": decision.phase_until,
        "version": t.version + 1,
    }
    if (decision.team, decision.person) != (t.team, t.person):
        update |= {"state": TicketState.open, "acknowledged_at": None}
    ticket = t.model_copy(update=update)
    reason = f"{handover_reason_prefix(t.project)} {ends}; from {before} to {after}"
    out = ticket_event(ticket, Change.reassigned, command.actor, reason, now, command.trace_id)
    # the tick's id is not used up: the timer entry stays where another due thing (a held notification, a
    # flapping ticket settling) put it, and the same tick must still do that thing next
    return TicketRecord(ticket=ticket, seen=record.seen), [out]


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
    Action.customer_replied: (_ANY, Change.customer_replied),
    Action.rate: (frozenset({S.resolved, S.closed}), Change.rated),
    Action.answer_workaround: (_ANY, Change.workaround_answered),
    Action.tick: (_ANY, Change.stable),
    Action.note: (_ANY, Change.noted),
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
    """The customer's answer: a waiting ticket stops waiting; on any other active ticket it is recorded as what
    the customer wrote (a mail reply comes whenever the customer writes, not only when asked)."""
    if t.state not in _ACTIVE:
        return {}, f"the customer wrote (the ticket is {t.state.value})"
    if not t.waiting_on_customer:
        return {}, "the customer wrote"
    return {"waiting_on_customer": False}, "the customer replied"


def _rate(t: Ticket, cmd: Command, now: datetime) -> Effect:
    """The reporter's survey answer: one per ticket (a later one replaces it), within the survey window."""
    refused = survey_refusal(t.kind.value, t.resolved_at, min(cmd.issued_at, now))
    if refused is not None or cmd.score is None:
        return refused or "rate needs a score"
    return {"rating": cmd.score, "rated_at": min(cmd.issued_at, now)}, rating_text(cmd.score, cmd.reason)


def _answer_workaround(t: Ticket, cmd: Command, _now: datetime) -> Effect:
    """The reporter's word on the workaround they were sent: recorded (the owner decides what follows)."""
    if t.known_issue is None:
        return "no workaround was suggested for this ticket"
    return {}, said_text(t.known_issue, bool(cmd.solved))


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
    Action.reopen: lambda t, _c, _n: (reopened_fields(t), "reopened"),
    Action.reassign: _reassign,
    Action.comment: lambda _t, _c, _n: ({}, "comment"),
    Action.snooze: _snooze,
    Action.set_priority: _set_priority,
    Action.wait_on_customer: _wait,
    Action.customer_replied: _replied,
    Action.rate: _rate,
    Action.answer_workaround: _answer_workaround,
    Action.tick: lambda _t, _c, _n: "tick is the router's own",
    Action.note: lambda _t, _c, _n: ({}, "note"),
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
        out = ticket_event(ticket, Change.rejected, command.actor, effect, now, command.trace_id, command.via)
        return TicketRecord(ticket=ticket, seen=seen), [out]
    update, description = effect
    if command.action is not Action.note:  # a system note is not somebody acting on the ticket
        last = f"{change.value} by {command.actor} at {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        update = {**update, "last_action": last}
    ticket = t.model_copy(update={**update, "version": t.version + 1})
    reason = (
        command.reason
        if command.action in (Action.comment, Action.note)
        else description
        if command.action in (Action.rate, Action.answer_workaround)  # the comment is in the description already
        else description + (f": {command.reason}" if command.reason else "")
    )
    out = ticket_event(ticket, change, command.actor, reason, now, command.trace_id, command.via)
    return TicketRecord(ticket=ticket, seen=seen), [out]
