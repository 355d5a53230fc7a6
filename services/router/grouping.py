"""Step 1 of the lifecycle, keyed by the group (dedup key): which ticket an event belongs to. ``assign`` maps an
event to its group's open ticket, or to a new ticket id derived from the event id (so a replayed event lands on
the same ticket); ``group_key`` is one ticket per alert unless the route groups by labels; the key's state follows
the ticket's changes (``key_update_for``). What travels to the ticket is a ``TicketInput``
(services/router/hop.py): the event, its group and its routing decision. Pure."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from services.router.rules import RouteDecision, event_labels
from shared.events import Change, EventStatus, InboundEvent, TicketEvent, TicketState
from shared.infra.ids import short_hash
from shared.streaming.topics import partition_of

TICKET_NAMESPACE = uuid.UUID("0b6f3c1e-5a1f-4c9e-8f0e-2d9c3a7b5e41")


class KeyState(BaseModel):
    """What a dedup key points at: its latest ticket, and when that ticket was resolved (if it is)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ticket_id: str
    resolved_at: datetime | None = None
    inline: bool = False
    """The ticket was minted on the group's own partition (``home_ticket_id``), so the task that assigns the
    group's events also writes the ticket and hands each event over in place; every input of such a ticket has
    gone that way, none through the ticket-inputs topic, so the two never overtake each other."""


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


@dataclass(frozen=True, slots=True)
class Home:
    """Where a group's state lives: its partition, of how many."""

    partition: int
    partitions: int


HOME_TRIES = 1024
"""Candidates tried for a ticket id on a given partition: none of them landing there has a chance of
(1 - 1/partitions) ** 1024, below 1e-7 for up to 64 partitions."""


def new_ticket_id(event_id: str, attempt: int = 0) -> str:
    seed = event_id if attempt == 0 else f"{event_id}\x1f{attempt}"
    return "tl-" + uuid.uuid5(TICKET_NAMESPACE, seed).hex[:16]


def home_ticket_id(event_id: str, home: Home) -> str | None:
    """The first of the event's candidate ticket ids whose partition is the home one (the partition of the
    group, whose task then writes the ticket too); deterministic, so a replayed event mints the same id. None
    when no candidate lands there (see HOME_TRIES)."""
    for attempt in range(HOME_TRIES):
        candidate = new_ticket_id(event_id, attempt)
        if partition_of(candidate.encode(), home.partitions) == home.partition:
            return candidate
    return None


def assign(
    current: KeyState | None, event: InboundEvent, reopen_window: timedelta, home: Home | None = None
) -> Assignment:
    """Which ticket an event belongs to. A problem that fires again within ``reopen_window`` of its ticket's
    resolution goes to that ticket (which reopens); later, it starts a new ticket, minted on the group's own
    partition when ``home`` is given (then ``inline``)."""
    if event.status is not EventStatus.firing:
        return Assignment(current.ticket_id if current else None, current)
    if current is not None and (
        current.resolved_at is None or event.received_at - current.resolved_at <= reopen_window
    ):
        return Assignment(current.ticket_id, current)
    at_home = home_ticket_id(event.event_id, home) if home is not None else None
    fresh = (
        KeyState(ticket_id=at_home, inline=True)
        if at_home is not None
        else KeyState(ticket_id=new_ticket_id(event.event_id))
    )
    return Assignment(fresh.ticket_id, fresh)


def hands_over_in_place(state: KeyState | None, ticket_id: str) -> bool:
    """Whether the group's task writes this ticket itself: the group points at it and it was minted inline. An
    input or news of any other ticket travels through its topic, in the order it always has."""
    return state is not None and state.inline and state.ticket_id == ticket_id


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


def group_key(event: InboundEvent, decision: RouteDecision) -> str:
    """One ticket per alert (its dedup key) unless the route groups by labels: then one per route and values."""
    if not decision.group_by:
        return event.dedup_key
    labels = event_labels(event)
    return "group/" + short_hash(decision.rule, *(f"{k}={labels.get(k, '')}" for k in sorted(decision.group_by)))
