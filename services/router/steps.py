"""The router's stream steps as pure functions: what each agent does with one input, given the state it holds and
the configuration of the moment, returning the new state and what to emit. The processor in service.py only reads
the tables, calls these, and writes and sends what they return; so every decision of the router is tested without
a broker (shared/streaming/memory.py drives the same processor in unit tests).

- ``route_step`` (an event from intake): the one routing decision, the group, and whether the event needs one
  more hop to the partition that owns its group;
- ``assign_step`` (keyed by group): which ticket the event goes to, and the group's new state;
- ``ticket_step`` (keyed by ticket, the single writer): the ticket after one of its alerts' events, the alert's
  membership, and the known issue a new customer report matches;
- ``command_step`` (keyed by ticket): a command (from people or the router's own timer) applied;
- ``changes_out``: a ticket's changes as the records that carry them (the tickets topic, and the group's state).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel

from services.router.commands import apply_command, hand_over, handover_due, reassign_on_call
from services.router.decision import carried_decision, decide_event, decide_labels, with_on_call
from services.router.grouping import Home, KeyState, assign, group_key, key_update_for
from services.router.hop import TicketInput
from services.router.knowledge import KnownIssueIndex, PastTickets, known_issue_for, similar_lines
from services.router.lifecycle import Member, TicketRecord, apply_event, with_known_issue
from services.router.projects import ProjectsConfig
from services.router.rules import RouteDecision, RoutingConfig
from shared.events import Action, Change, Command, Ticket, TicketEvent
from shared.rules.matchers import matcher_labels
from shared.rules.oncall import Override, TeamsConfig, on_call
from shared.streaming.topics import partition_of


@dataclass(frozen=True)
class Config:
    """The router's configuration at one moment (each file reloaded on change, overrides from SQL)."""

    routing: RoutingConfig
    projects: ProjectsConfig
    teams: TeamsConfig
    overrides: list[Override] = field(default_factory=list)
    known: KnownIssueIndex | None = None
    """The projects' known issues indexed for matching by meaning (None: by keywords and labels only)."""
    past: PastTickets | None = None
    """Recently resolved tickets, indexed: a new ticket opens naming the most similar (None: not compared)."""


@dataclass(frozen=True, slots=True)
class Out:
    """A record to send: to which of the router's topics, its key, its value, and the ids for its headers."""

    to: Literal["grouped", "ticket_inputs", "tickets", "key_updates"]
    key: str
    value: BaseModel | TicketInput
    ids: tuple[tuple[str, str], ...] = ()


def route_step(item: TicketInput, config: Config, here: Home | None = None) -> tuple[TicketInput, list[Out]]:
    """A new event's routing decision, made once and carried from here on, and its group. When the group lives
    on another partition than ``here`` (the partition the event was read from; None: known only when the group
    is the event's own dedup key), the event goes one more hop, to the partition that owns the group (the
    returned records); else the caller assigns it at once."""
    ev = item.event
    decided = decide_event(ev, config.routing, config.projects, config.teams, config.overrides)
    routed = TicketInput(group_key(ev, decided), ev, decided, item.raw)
    if routed.group_key == ev.dedup_key or (
        here is not None and partition_of(routed.group_key.encode(), here.partitions) == here.partition
    ):
        return routed, []
    ids = (("trace_id", ev.trace_id), ("event_id", ev.event_id))
    return routed, [Out("grouped", routed.group_key, routed, ids)]


def assign_step(
    state: KeyState | None, item: TicketInput, reopen_window: timedelta, home: Home | None = None
) -> tuple[KeyState | None, list[Out]]:
    """The group's ticket for this event (its open one, or a new one minted on ``home``, the group's partition),
    and the group's state after it; nothing when a resolve comes for a group with no open ticket."""
    result = assign(state, item.event, reopen_window, home)
    if result.ticket_id is None:
        return state, []
    ev = item.event
    ids = (("trace_id", ev.trace_id), ("event_id", ev.event_id), ("ticket_id", result.ticket_id))
    return result.key_state, [Out("ticket_inputs", result.ticket_id, item, ids)]


def ticket_step(
    record: TicketRecord | None, member: Member | None, ticket_id: str, item: TicketInput, now: datetime, config: Config
) -> tuple[TicketRecord | None, Member | None, list[TicketEvent]]:
    """The ticket after one of its alerts' events, under the decision the event carries: the new record, what the
    ticket now knows of that alert, and the changes (a new customer report that matches a known issue opens with
    its workaround, saying how it matched)."""
    ev = item.event
    decision = carried_decision(item.decision, ev, config.routing, config.projects, config.teams, config.overrides)
    new, changes, after = apply_event(
        record, ticket_id, item.group_key, ev, member, decision, now, config.routing.flapping
    )
    just_opened = new is not None and [c.change for c in changes] == [Change.opened]
    known = known_issue_for(ev, config.projects, config.known) if just_opened else None
    if new is not None and known is not None:
        issue = known.issue
        new, opened = with_known_issue(
            new,
            changes[0],
            issue.id,
            issue.title,
            issue.workaround,
            reply_to_reporter=issue.reply_to_reporter,
            source=issue.source,
            how=known.suggestion.explain(),
        )
        changes = [opened]
    if just_opened and config.past is not None:
        similar = similar_lines(ev, ticket_id, changes[0].ticket.customer, config.past)
        if similar:
            changes = [changes[0].model_copy(update={"similar": similar})]
    return new, after, changes


class UnknownTicketError(ValueError):
    """A command for a ticket this partition does not hold (dead-lettered with this reason)."""


def command_step(
    record: TicketRecord | None, cmd: Command, now: datetime, config: Config
) -> tuple[TicketRecord, list[TicketEvent]]:
    """A command applied to its ticket; reassigning to a team with no person named goes to whoever is on call."""
    if record is None:
        raise UnknownTicketError(f"command {cmd.command_id} names unknown ticket {cmd.ticket_id!r}")
    ends = project_ends(record.ticket, config)
    if cmd.action is Action.tick and handover_due(record.ticket, now, ends):
        return hand_over(record, cmd, handover_decision(record.ticket, config, now, ends), now)
    if cmd.action is Action.reassign and cmd.team and not cmd.person:
        cmd = reassign_on_call(cmd, on_call(cmd.team, config.teams, config.overrides, cmd.issued_at))
    return apply_command(record, cmd, now)


def project_ends(ticket: Ticket, config: Config) -> datetime | None:
    """When the ticket's project's hypercare ends as configured now (None: no project, or no longer one)."""
    if ticket.project is None:
        return None
    return next((p.hypercare_ends for p in config.projects.projects if p.name == ticket.project), None)


def handover_decision(ticket: Ticket, config: Config, now: datetime, ends: datetime | None = None) -> RouteDecision:
    """Who a ticket goes to when its project's hypercare ends: the routing decision for its labels at that
    moment (the project then in operations), and whoever is on call for that team now, when it moves. The moment is
    the end the ticket was given, or the project's end as configured now (``ends``) if that was moved earlier."""
    at = min((d for d in (ticket.phase_until, ends) if d is not None), default=ticket.opened_at)
    labels = matcher_labels(ticket.labels, ticket.severity.value, ticket.source, ticket.kind.value)
    decision = decide_labels(labels, ticket.severity, config.routing, config.projects, at)
    return with_on_call(decision, on_call(decision.team, config.teams, config.overrides, max(at, now)))


def changes_out(ticket_id: str, changes: list[TicketEvent]) -> list[Out]:
    """Each change on the tickets topic, and the group's state after it where the change moves it."""
    out: list[Out] = []
    for change in changes:
        out.append(Out("tickets", ticket_id, change, (("trace_id", change.trace_id), ("ticket_id", ticket_id))))
        update = key_update_for(change)
        if update is not None:
            out.append(Out("key_updates", update.dedup_key, update))
    return out
