"""Step 1 of the lifecycle, keyed by the group (dedup key): which ticket an event belongs to. ``assign`` maps an
event to its group's open ticket, or to a new ticket id derived from the event id (so a replayed event lands on
the same ticket); ``group_key`` is one ticket per alert unless the route groups by labels; the key's state follows
the ticket's changes (``key_update_for``). What travels to the ticket is a ``TicketInput``: the event, its group
and its routing decision. Pure."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from services.router.rules import RouteDecision, event_labels
from shared.events import Change, EventStatus, InboundEvent, TicketEvent, TicketState
from shared.infra.ids import short_hash
from shared.streaming.codec import DecodeError, decode

TICKET_NAMESPACE = uuid.UUID("0b6f3c1e-5a1f-4c9e-8f0e-2d9c3a7b5e41")


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


def group_key(event: InboundEvent, decision: RouteDecision) -> str:
    """One ticket per alert (its dedup key) unless the route groups by labels: then one per route and values."""
    if not decision.group_by:
        return event.dedup_key
    labels = event_labels(event)
    return "group/" + short_hash(decision.rule, *(f"{k}={labels.get(k, '')}" for k in sorted(decision.group_by)))
