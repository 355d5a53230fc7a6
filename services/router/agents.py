"""The router's faust agents: thin shells around services.router.decision, grouping, lifecycle and commands."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import faust
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from services.router.commands import apply_command, reassign_on_call, tick_command, timer_due
from services.router.decision import carried_decision, decide_event
from services.router.grouping import (
    KeyState,
    KeyUpdate,
    TicketInput,
    apply_key_update,
    assign,
    group_key,
    grouped_input,
    key_update_for,
)
from services.router.lifecycle import Member, TicketRecord, apply_event, with_known_issue
from services.router.projects import ProjectsConfig, known_issue_for
from services.router.rules import RoutingConfig
from shared.events import Action, Change, Command, Escalation, InboundEvent, Ticket, TicketEvent
from shared.infra.config import ConfigWatcher, poll_watchers
from shared.infra.logging import bind_ids, get_logger, ids_from_headers, make_headers
from shared.infra.metrics import counter
from shared.rules.oncall import Override, TeamsConfig, on_call
from shared.store import db
from shared.streaming.codec import DecodeError, decode, encode
from shared.streaming.streams import decode_or_deadletter, emit, raw_table, raw_topic, send_acked, to_deadletter
from shared.streaming.topics import Topics

log = get_logger(__name__)
SERVICE = "router"
Changes = list[TicketEvent]


@dataclass
class RouterDeps:
    topics: Topics
    routing: ConfigWatcher[RoutingConfig]
    projects: ConfigWatcher[ProjectsConfig]
    engine: Engine
    registry: CollectorRegistry
    teams: ConfigWatcher[TeamsConfig]
    overrides: list[Override] = field(default_factory=list)
    """On-call overrides (from SQL, where the API writes them), refreshed every couple of seconds."""


def register(app: faust.App, deps: RouterDeps) -> None:
    t = deps.topics
    key_updates = raw_topic(app, t.key_updates.name, internal=True, partitions=t.partitions)
    grouped = raw_topic(app, t.grouped.name, internal=True, partitions=t.partitions)
    assign_inputs = raw_topic(app, t.events.name, t.grouped.name, t.key_updates.name)
    ticket_inputs = raw_topic(app, t.ticket_inputs.name, internal=True, partitions=t.partitions)
    lifecycle_inputs = raw_topic(app, t.commands.name, t.ticket_inputs.name)
    tickets = raw_topic(app, t.tickets.name)
    projected_topics = raw_topic(app, t.tickets.name, t.escalations.name)
    deadletter = raw_topic(app, t.deadletter.name)
    assignments = raw_table(app, "assignments", partitions=t.partitions)
    records = raw_table(app, "tickets", partitions=t.partitions)
    # what each ticket knows of each of its alerts; keyed "ticket id \x1f alert dedup key", written by the
    # ticket's single writer on the ticket's partition
    members = raw_table(app, "members", partitions=t.partitions)
    # tickets with something due for the router's timer (ticket id -> when), so it never scans every ticket
    timers = raw_table(app, "timers", partitions=t.partitions)
    commands = raw_topic(app, t.commands.name)

    ticket_changes = counter(
        deps.registry, "ticketloop_router_ticket_changes_total", "Ticket events emitted", ["change", "team"]
    )
    projected = counter(
        deps.registry, "ticketloop_router_projected_events_total", "Ticket events and escalations written to SQL"
    )

    reloads = counter(deps.registry, "ticketloop_router_config_reloads_total", "Routing file changes seen", ["result"])

    @app.timer(interval=2.0, name="router-reload-config")
    async def reload_config() -> None:
        try:
            deps.overrides = await asyncio.to_thread(db.list_overrides, deps.engine, since=datetime.now(UTC))
        except SQLAlchemyError as exc:
            log.warning("overrides_unavailable_keeping_last", error=str(exc))
        await poll_watchers((deps.routing, deps.projects, deps.teams), reloads)

    @app.timer(interval=1.0, name="router-ticket-timers")
    async def ticket_timers() -> None:
        """A tick command for each ticket with something due (flapping settles, grouped notifications); the
        ticket's single writer decides what it means."""
        tables: Any = app.tables
        if not tables.recovery.completed.is_set() or app.rebalancing:
            return
        now = datetime.now(UTC)
        for key, raw in list(timers.items()):
            due = datetime.fromisoformat(raw.decode())
            if due <= now:
                ticket_id = key.decode()
                cmd = tick_command(ticket_id, due, now)
                await send_acked(commands, ticket_id, encode(cmd), make_headers(ticket_id=ticket_id))

    def key_state(dedup: bytes) -> KeyState | None:
        raw = assignments.get(dedup)
        return decode(KeyState, raw) if raw is not None else None

    def set_key_state(dedup: bytes, before: KeyState | None, after: KeyState | None) -> None:
        if after == before:
            return
        if after is None:
            del assignments[dedup]
        else:
            assignments[dedup] = encode(after)

    @app.agent(assign_inputs, name="router-assign")
    async def assign_agent(stream: Any) -> AsyncIterator[None]:
        async for event in stream.events():
            bind_ids(**ids_from_headers(event.headers))
            if event.message.topic == t.key_updates.name:
                update = await decode_or_deadletter(KeyUpdate, event, deadletter, SERVICE)
                if update is not None:
                    dedup = update.dedup_key.encode()
                    current = key_state(dedup)
                    set_key_state(dedup, current, apply_key_update(current, update))
                yield None
                continue
            try:
                item = grouped_input(event.key, event.value) if event.message.topic == t.grouped.name else None
                ev = item.event if item is not None else decode(InboundEvent, event.value)
            except DecodeError as exc:
                await to_deadletter(deadletter, SERVICE, event, str(exc))
                yield None
                continue
            bind_ids(trace_id=ev.trace_id, event_id=ev.event_id)
            if item is None:
                # the one routing decision of this event: made here, carried to its group and its ticket
                decided = decide_event(
                    ev, deps.routing.current, deps.projects.current, deps.teams.current, deps.overrides
                )
                item = TicketInput(group_key=group_key(ev, decided), event=ev, decision=decided)
                if item.group_key != ev.dedup_key:
                    # one more hop: to the partition that owns the group
                    headers = make_headers(trace_id=ev.trace_id, event_id=ev.event_id)
                    await emit(grouped, item.group_key, encode(item), headers)
                    yield None
                    continue
            group = item.group_key
            current = key_state(group.encode())
            result = assign(current, ev, deps.routing.current.reopen_window)
            if result.ticket_id is None:
                log.info("resolved_without_open_ticket", group=group)
            else:
                await emit(
                    ticket_inputs,
                    result.ticket_id,
                    encode(item),
                    make_headers(trace_id=ev.trace_id, event_id=ev.event_id, ticket_id=result.ticket_id),
                )
                set_key_state(group.encode(), current, result.key_state)
            yield None

    def on_command(record: TicketRecord | None, cmd: Command, now: datetime) -> tuple[TicketRecord | None, Changes]:
        bind_ids(trace_id=cmd.trace_id, ticket_id=cmd.ticket_id)
        if record is None:
            raise DecodeError(f"command {cmd.command_id} names unknown ticket {cmd.ticket_id!r}")
        if cmd.action is Action.reassign and cmd.team and not cmd.person:
            cmd = reassign_on_call(cmd, on_call(cmd.team, deps.teams.current, deps.overrides, cmd.issued_at))
        return apply_command(record, cmd, now)

    def on_ticket_input(
        ticket_id: str, record: TicketRecord | None, item: TicketInput, now: datetime
    ) -> tuple[TicketRecord | None, Changes]:
        ev = item.event
        bind_ids(trace_id=ev.trace_id, event_id=ev.event_id, ticket_id=ticket_id)
        member_key = f"{ticket_id}\x1f{ev.dedup_key}".encode()
        member = Member.decode(members.get(member_key))
        current = (deps.routing.current, deps.projects.current, deps.teams.current, deps.overrides)
        decision = carried_decision(item.decision, ev, *current)
        flap = deps.routing.current.flapping
        new, changes, after = apply_event(record, ticket_id, item.group_key, ev, member, decision, now, flap)
        if after is not None and after != member:
            members[member_key] = after.encode()
        just_opened = new is not None and [c.change for c in changes] == [Change.opened]
        known = known_issue_for(ev, deps.projects.current) if just_opened else None
        if new is not None and known is not None:
            issue = known[1]
            new, opened = with_known_issue(
                new, changes[0], issue.id, issue.title, issue.workaround, reply_to_reporter=issue.reply_to_reporter
            )
            changes = [opened]
        return new, changes

    def track_timer(key: bytes, before: Ticket | None, after: Ticket) -> None:
        due, was = timer_due(after), timer_due(before) if before is not None else None
        if due is not None and due != was:
            timers[key] = due.isoformat().encode()
        elif due is None and was is not None:
            timers.pop(key, None)

    @app.agent(lifecycle_inputs, name="router-lifecycle")
    async def lifecycle_agent(stream: Any) -> AsyncIterator[None]:
        async for event in stream.events():
            bind_ids(**ids_from_headers(event.headers))
            ticket_id = event.key
            raw = records.get(ticket_id.encode())
            record = decode(TicketRecord, raw) if raw is not None else None
            now = datetime.now(UTC)
            try:
                if event.message.topic == t.commands.name:
                    new, changes = on_command(record, decode(Command, event.value), now)
                else:
                    new, changes = on_ticket_input(ticket_id, record, decode(TicketInput, event.value), now)
            except DecodeError as exc:
                await to_deadletter(deadletter, SERVICE, event, str(exc))
                yield None
                continue
            for change in changes:
                await emit(
                    tickets, ticket_id, encode(change), make_headers(trace_id=change.trace_id, ticket_id=ticket_id)
                )
                ticket_changes.labels(change=change.change.value, team=change.ticket.team).inc()
                key_update = key_update_for(change)
                if key_update is not None:
                    await emit(key_updates, key_update.dedup_key, encode(key_update))
                log.info("ticket_changed", change=change.change.value, version=change.ticket.version)
            if new is not None and (changes or new is not record):
                records[ticket_id.encode()] = encode(new)
                track_timer(ticket_id.encode(), record.ticket if record is not None else None, new.ticket)
            yield None

    @app.agent(projected_topics, name="router-project")
    async def project_agent(stream: Any) -> AsyncIterator[None]:
        async for batch in stream.take_events(500, within=0.25):
            changes: list[TicketEvent] = []
            escalations: list[Escalation] = []
            for event in batch:
                try:
                    if event.message.topic == t.escalations.name:
                        escalations.append(decode(Escalation, event.value))
                    else:
                        changes.append(decode(TicketEvent, event.value))
                except DecodeError as exc:
                    await to_deadletter(deadletter, SERVICE, event, str(exc))
            if changes or escalations:
                await asyncio.to_thread(db.project, deps.engine, changes, escalations)
                projected.inc(len(changes) + len(escalations))
            yield None
