"""Grouping events into tickets and the ticket lifecycle, as pure functions.

Step 1 (keyed by dedup key): ``assign`` maps an event to its open ticket, or to a new ticket id derived from
the event id (so a replayed event lands on the same ticket). Step 2 (keyed by ticket id, the single writer):
``apply_event`` and ``apply_command`` turn the ticket record into its next version and the ticket events that
describe the change. An invalid command is not dropped: it becomes a ``rejected`` ticket event with the reason.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from services.router.rules import RouteDecision
from shared.events import Action, Change, Command, EventStatus, InboundEvent, Ticket, TicketEvent, TicketState

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


@dataclass(frozen=True, slots=True)
class Assignment:
    ticket_id: str | None
    """None: nothing to do (a resolution for which no ticket is open)."""
    keep_mapping: bool
    """Whether the dedup key keeps pointing at this ticket afterwards."""


def new_ticket_id(event_id: str) -> str:
    return "tl-" + uuid.uuid5(TICKET_NAMESPACE, event_id).hex[:16]


def assign(current: str | None, event: InboundEvent) -> Assignment:
    if event.status is EventStatus.resolved:
        return Assignment(current, keep_mapping=False)
    return Assignment(current or new_ticket_id(event.event_id), keep_mapping=True)


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


def apply_event(
    record: TicketRecord | None, ticket_id: str, event: InboundEvent, decision: RouteDecision, now: datetime
) -> tuple[TicketRecord | None, list[TicketEvent]]:
    if record is not None and record.has_seen(event.event_id):
        return record, []
    if record is None:
        if event.status is EventStatus.resolved:
            return None, []
        ticket = Ticket(
            ticket_id=ticket_id,
            dedup_key=event.dedup_key,
            kind=event.kind,
            source=event.source,
            state=TicketState.open,
            summary=event.summary,
            severity=event.severity,
            priority=decision.priority,
            team=decision.team,
            person=decision.person,
            watchers=list(decision.watchers),
            channels=list(decision.channels),
            policy=decision.policy,
            rule=decision.rule,
            labels=event.labels,
            occurrences=1,
            first_seen=event.occurred_at,
            last_seen=event.occurred_at,
            opened_at=now,
            version=1,
        )
        out = _ticket_event(ticket, Change.opened, event.source, decision.explain(), now, event.trace_id)
        return TicketRecord(ticket=ticket, seen=[event.event_id]), [out]
    t = record.ticket
    if event.status is EventStatus.resolved:
        if t.state is TicketState.resolved:
            return record.model_copy(update={"seen": record.remember(event.event_id)}), []
        ticket = t.model_copy(update={"state": TicketState.resolved, "resolved_at": now, "version": t.version + 1})
        out = _ticket_event(ticket, Change.resolved, event.source, "resolved by the source", now, event.trace_id)
    else:
        ticket = t.model_copy(
            update={
                "occurrences": t.occurrences + 1,
                "last_seen": max(t.last_seen, event.occurred_at),
                "version": t.version + 1,
            }
        )
        reason = "occurred again" + (" while resolved" if t.state is TicketState.resolved else "")
        out = _ticket_event(ticket, Change.occurred, event.source, reason, now, event.trace_id)
    return TicketRecord(ticket=ticket, seen=record.remember(event.event_id)), [out]


_ALLOWED: dict[Action, tuple[TicketState, ...]] = {
    Action.acknowledge: (TicketState.open,),
    Action.resolve: (TicketState.open, TicketState.acknowledged),
}
_TARGET = {Action.acknowledge: TicketState.acknowledged, Action.resolve: TicketState.resolved}
_CHANGE = {Action.acknowledge: Change.acknowledged, Action.resolve: Change.resolved}


def apply_command(record: TicketRecord, command: Command, now: datetime) -> tuple[TicketRecord, list[TicketEvent]]:
    if record.has_seen(command.command_id):
        return record, []
    t = record.ticket
    seen = record.remember(command.command_id)
    if t.state not in _ALLOWED[command.action]:
        ticket = t.model_copy(update={"version": t.version + 1})
        reason = f"cannot {command.action.value} a ticket that is {t.state.value}"
        out = _ticket_event(ticket, Change.rejected, command.actor, reason, now, command.trace_id)
        return TicketRecord(ticket=ticket, seen=seen), [out]
    stamp = "acknowledged_at" if command.action is Action.acknowledge else "resolved_at"
    ticket = t.model_copy(update={"state": _TARGET[command.action], stamp: now, "version": t.version + 1})
    out = _ticket_event(ticket, _CHANGE[command.action], command.actor, command.reason, now, command.trace_id)
    return TicketRecord(ticket=ticket, seen=seen), [out]
