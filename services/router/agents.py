"""The router's faust agents: thin shells that read their tables, call services.router.steps and send and write
what the steps return."""

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

from services.router.commands import tick_command, timer_due
from services.router.grouping import (
    KeyState,
    KeyUpdate,
    TicketInput,
    apply_key_update,
    grouped_input,
)
from services.router.lifecycle import Member, TicketRecord
from services.router.projects import ProjectsConfig
from services.router.rules import RoutingConfig
from services.router.steps import (
    Config,
    Out,
    UnknownTicketError,
    assign_step,
    changes_out,
    command_step,
    route_step,
    ticket_step,
)
from shared.events import Command, Escalation, InboundEvent, Ticket, TicketEvent
from shared.infra.config import ConfigWatcher, poll_watchers
from shared.infra.logging import bind_ids, get_logger, ids_from_headers, make_headers
from shared.infra.metrics import counter
from shared.rules.oncall import Override, TeamsConfig
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

    outputs = {"grouped": grouped, "ticket_inputs": ticket_inputs, "tickets": tickets, "key_updates": key_updates}

    async def send_out(records: list[Out]) -> None:
        """Send what a step returned, as part of the event being handled (its transaction, under exactly_once)."""
        for out in records:
            await emit(outputs[out.to], out.key, encode(out.value), make_headers(**dict(out.ids)))

    def config() -> Config:
        return Config(deps.routing.current, deps.projects.current, deps.teams.current, deps.overrides)

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
                item, hop = route_step(TicketInput(group_key=ev.dedup_key, event=ev), config())
                if hop:
                    await send_out(hop)
                    yield None
                    continue
            group = item.group_key.encode()
            current = key_state(group)
            after, out = assign_step(current, item, deps.routing.current.reopen_window)
            if not out:
                log.info("resolved_without_open_ticket", group=item.group_key)
            await send_out(out)
            set_key_state(group, current, after)
            yield None

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
            new: TicketRecord | None
            try:
                if event.message.topic == t.commands.name:
                    cmd = decode(Command, event.value)
                    bind_ids(trace_id=cmd.trace_id, ticket_id=cmd.ticket_id)
                    new, changes = command_step(record, cmd, now, config())
                else:
                    item = decode(TicketInput, event.value)
                    ev = item.event
                    bind_ids(trace_id=ev.trace_id, event_id=ev.event_id, ticket_id=ticket_id)
                    member_key = f"{ticket_id}\x1f{ev.dedup_key}".encode()
                    member = Member.decode(members.get(member_key))
                    new, after, changes = ticket_step(record, member, ticket_id, item, now, config())
                    if after is not None and after != member:
                        members[member_key] = after.encode()
            except (DecodeError, UnknownTicketError) as exc:
                await to_deadletter(deadletter, SERVICE, event, str(exc))
                yield None
                continue
            await send_out(changes_out(ticket_id, changes))
            for change in changes:
                ticket_changes.labels(change=change.change.value, team=change.ticket.team).inc()
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
