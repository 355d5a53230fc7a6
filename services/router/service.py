"""The router's shells: ``RouterProcessor`` reads a task's tables, calls services.router.steps for each input
and writes and sends what they return (run exactly once, in batches, by shared/streaming/transactional.py);
``Router`` runs it beside the SQL projection (at least once: the projection is idempotent by ticket version) and
the reload timer.

One task per partition number handles all five inputs of that partition:

- ``events`` (from intake, by dedup key): routed once (``route_step``); assigned here when its group lives on
  this partition, else one hop to ``grouped``: a transaction's hops to one partition travel as one record, a
  JSON array (``Task.send_batched``; a record costs the client ~50 µs to produce and read back);
- ``grouped`` (to the group key's partition) and ``key_updates`` (the group's state, sent back by the ticket's
  writer):
  ``assign_step`` on the ``assignments`` table. A new ticket is minted on the group's own partition
  (``inline``): this task writes it too, so the event is handed to ``ticket_step`` in place and the ticket's
  news reaches the group's state in place, no hop. Tickets minted before that travel: out to ``ticket_inputs``;
- ``ticket_inputs`` and ``commands`` (by ticket id): the ticket's single writer, ``ticket_step`` and
  ``command_step`` on the ``tickets`` and ``members`` tables, out to ``tickets`` (and ``key_updates``). A
  ticket's plain occurrences in one transaction go out as one ticket event (``Task.send_folded``; its
  ``told`` counts them), so a storm is one event per ticket per commit downstream, not one per alert;
- every second, the tickets of the partition with something due (``timers``) get their tick command, applied
  in the same transaction as any command (flapping settles, grouped notifications).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from services.router.commands import tick_command, timer_due
from services.router.grouping import (
    Home,
    KeyState,
    KeyUpdate,
    apply_key_update,
    hands_over_in_place,
)
from services.router.handover_watch import HandoverWatch
from services.router.heartbeats import BadBeatError, Heartbeat, on_beat, on_tick
from services.router.hop import TicketInput, decode_input, encode_input, grouped_inputs
from services.router.knowledge import KnownIssueIndex, PastTickets, build_known_issue_index, past_tickets
from services.router.lifecycle import Member, Occurrences, TicketRecord, fold_occurrences, folds
from services.router.project_metrics import ProjectGauges
from services.router.projects import ProjectsConfig
from services.router.risk_watch import RiskWatch
from services.router.rules import RoutingConfig
from services.router.sender import KafkaSender
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
from shared.events import MAX_EVENT_BYTES, Command, Escalation, EventKind, InboundEvent, Ticket, TicketEvent
from shared.infra.config import ConfigWatcher, poll_watchers
from shared.infra.logging import bind_ids, get_logger, ids_from_headers, make_headers, new_trace_id
from shared.infra.metrics import counter
from shared.rules.oncall import Override, TeamsConfig
from shared.rules.similarity import TextModels
from shared.store import db
from shared.streaming.codec import DecodeError, decode, encode
from shared.streaming.driver import BatchDriver, DriverConfig, Record
from shared.streaming.runtime import every
from shared.streaming.stream_metrics import ReasonKind, StreamMetrics
from shared.streaming.topics import Topics, partition_of
from shared.streaming.transactional import POISON_MAX, PartFailed, Task, TransactionalDriver, TxConfig

log = get_logger(__name__)
SERVICE = "router"

ASSIGNMENTS = "assignments"  # group (or dedup) key -> KeyState
TICKETS = "tickets"  # ticket id -> TicketRecord
MEMBERS = "members"  # "ticket id \x1f alert dedup key" -> Member: what each ticket knows of each of its alerts
TIMERS = "timers"  # ticket id -> when the router's timer has something to do for it (ISO time)
HEARTBEATS = "heartbeats"  # heartbeat name -> Heartbeat (services/router/heartbeats.py)


PAST_TICKETS = 2000
"""How many of the most recently resolved tickets a new one is compared with."""
PAST_REFRESH_S = 60.0


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
    text_models: TextModels | None = None
    """What reports are compared with known issues by meaning (loaded in main.py; None: keywords and labels only)."""
    stream: StreamMetrics | None = None
    """The consumers' lag and the dead letters, counted (made in main.py; None: not counted)."""


def timer_change(before: Ticket | None, after: Ticket) -> tuple[bool, datetime | None]:
    """Whether the ticket's timer entry changes, and to what (None: removed)."""
    due, was = timer_due(after), timer_due(before) if before is not None else None
    return due != was, due


def decode_record(raw: bytes) -> TicketRecord:
    return decode(TicketRecord, raw)


def decode_key_state(raw: bytes) -> KeyState:
    return decode(KeyState, raw)


def encode_key_state(state: KeyState) -> bytes:
    """A group's state as stored; ``inline`` (and anything else at its default) left out, so a router of the
    release before inline tickets still reads the state of every group whose ticket is not inline."""
    return state.__pydantic_serializer__.to_json(state, exclude_defaults=True)


def encode_change(event: TicketEvent) -> bytes:
    """A ticket event as sent: ``told`` only when it tells more than one occurrence, so an event of one change
    reads as it did before folding."""
    if event.told == 1:
        return event.__pydantic_serializer__.to_json(event, exclude={"told"})
    return encode(event)


def encode_record(value: BaseModel | TicketInput) -> bytes:
    """What the router sends, as its record's value."""
    if isinstance(value, TicketInput):
        return encode_input(value)
    if isinstance(value, TicketEvent):
        return encode_change(value)
    return encode(value)


def reason_kind(exc: DecodeError | UnknownTicketError) -> ReasonKind:
    """What a dead letter of an input the router could not take is counted as."""
    return "unknown_ticket" if isinstance(exc, UnknownTicketError) else "undecodable"


def item_record(record: Record, item: TicketInput) -> Record:
    """One item of a batch of the grouped topic as a record of its own (where the batch was, keyed by the item's
    group, its value the item alone): what is dead-lettered when that item alone cannot be handled, so the dead
    letter holds what failed and nothing else, and sent to the grouped topic again it is a record of one."""
    value = encode_input(item)
    return Record(
        record.topic, record.partition, record.offset, item.group_key.encode(), value, (), record.timestamp_ms
    )


def member_key(ticket_id: str, dedup_key: str) -> bytes:
    return f"{ticket_id}\x1f{dedup_key}".encode()


def too_large(size: int) -> str:
    return f"an event of {size:,} bytes: at most {MAX_EVENT_BYTES:,} (what the router writes of it must fit the broker)"


class RouterProcessor:
    """What the router does with one partition's inputs (see the module doc); no I/O of its own."""

    tables: tuple[str, ...] = (ASSIGNMENTS, TICKETS, MEMBERS, TIMERS, HEARTBEATS)

    def __init__(self, deps: RouterDeps) -> None:
        self.deps = deps
        t = deps.topics
        self.topic_of = {
            "grouped": t.grouped.name,
            "ticket_inputs": t.ticket_inputs.name,
            "tickets": t.tickets.name,
            "key_updates": t.key_updates.name,
        }
        self.handlers: dict[str, Callable[[Task, Record], None]] = {
            t.events.name: self.on_event,
            t.grouped.name: self.on_grouped,
            t.key_updates.name: self.on_key_update,
            t.ticket_inputs.name: self.on_ticket_input,
            t.commands.name: self.on_command,
        }
        self.deadletter = t.deadletter.name
        self._known: KnownIssueIndex | None = None
        self._config: Config | None = None
        self._counted: dict[tuple[str, str], Counter] = {}
        self.failed_items: dict[tuple[str, int, int], dict[int, str]] = {}
        """Per grouped batch record, the items whose handling raised and why (``PartFailed``): dead-lettered alone
        when it is read again."""
        self.past: PastTickets | None = None
        """Recently resolved tickets (Router.refresh_past, from the read model): new tickets name the most similar."""
        self.partitions = t.partitions
        self.unmatched = counter(
            deps.registry,
            "ticketloop_router_events_without_ticket_total",
            "Acknowledges and resolves for a group with no open ticket (e.g. PagerDuty's for an unknown dedup_key)",
            ["status", "source"],
        )
        self.ticket_changes = counter(
            deps.registry, "ticketloop_router_ticket_changes_total", "Ticket events emitted", ["change", "team"]
        )

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(self.handlers)

    def config(self) -> Config:
        """The configuration of the moment: the one built before while none of its parts changed (asked twice an
        event in a storm)."""
        d = self.deps
        routing, projects, teams, overrides, past = (
            d.routing.current,
            d.projects.current,
            d.teams.current,
            d.overrides,
            self.past,
        )
        c = self._config
        if (
            c is None
            or c.routing is not routing
            or c.projects is not projects
            or c.teams is not teams
            or c.overrides is not overrides
            or c.past is not past
        ):
            c = self._config = Config(routing, projects, teams, overrides, self.known_issues(projects), past)
        return c

    def known_issues(self, projects: ProjectsConfig) -> KnownIssueIndex | None:
        """The known issues indexed for matching by meaning: built once per load of projects.yaml."""
        models = self.deps.text_models
        if models is None:
            return None
        if self._known is None or self._known.source is not projects:
            self._known = build_known_issue_index(projects, models)
        return self._known

    # -- inputs ------------------------------------------------------------------------------------------------

    def process(self, task: Task, records: list[Record]) -> None:
        handlers = self.handlers
        for record in records:
            try:
                handlers[record.topic](task, record)  # each binds the ids of its input to the log lines
            except (DecodeError, UnknownTicketError) as exc:
                bind_ids(**ids_from_headers(record.headers))
                kind = reason_kind(exc)
                self.to_deadletter(task, record, str(exc), kind)

    def on_key_update(self, task: Task, record: Record) -> None:
        update = decode(KeyUpdate, record.value)
        dedup = update.dedup_key.encode()
        current = self.key_state(task, dedup)
        self.set_key_state(task, dedup, current, apply_key_update(current, update))

    def key_update_in_place(self, task: Task, update: KeyUpdate) -> bool:
        """Apply a ticket's news to its group's state here, when this task holds both (an inline ticket);
        False: it has to travel."""
        dedup = update.dedup_key.encode()
        current = self.key_state(task, dedup)
        if not hands_over_in_place(current, update.ticket_id):
            return False
        self.set_key_state(task, dedup, current, apply_key_update(current, update))
        return True

    def on_event(self, task: Task, record: Record) -> None:
        size = len(record.value or b"")
        if size > MAX_EVENT_BYTES:  # intake refuses these: one written to the topic otherwise would make
            raise DecodeError(too_large(size))  # records no transaction can commit
        ev = decode(InboundEvent, record.value)
        bind_ids(trace_id=ev.trace_id, event_id=ev.event_id)
        if ev.kind is EventKind.heartbeat:
            self.beat(task, ev)
        else:
            self.route(task, ev, record.value)

    def beat(self, task: Task, ev: InboundEvent) -> None:
        key = ev.labels.get("heartbeat", ev.dedup_key).encode()
        state = task.load(HEARTBEATS, key, Heartbeat.decode)
        try:
            after, resolved = on_beat(state, ev, datetime.now(UTC))
        except BadBeatError as exc:
            raise DecodeError(str(exc)) from exc
        task.store(HEARTBEATS, key, after, Heartbeat.encode)
        if resolved is not None:
            log.info("heartbeat_back", heartbeat=after.name)
            self.route(task, resolved)

    def route(self, task: Task, ev: InboundEvent, raw: bytes | None = None) -> None:
        """The one routing decision of this event: made here, carried to its group and its ticket (with the event's
        bytes as read, ``raw``, when it was read from the events topic: a hop carries them as they are)."""
        here = Home(task.partition, self.partitions)
        item, hop = route_step(TicketInput(ev.dedup_key, ev, None, raw), self.config(), here)
        if hop:
            self.send_out(task, hop)
        else:
            self.assign(task, item)

    def on_grouped(self, task: Task, record: Record) -> None:
        key = record.key.decode() if record.key is not None else ""
        items = grouped_inputs(key, record.value or b"")  # decoded whole before any is applied
        where = (record.topic, record.partition, record.offset)
        failed = self.failed_items.get(where, {})
        for n, item in enumerate(items, 1):
            bind_ids(trace_id=item.event.trace_id, event_id=item.event.event_id)
            if n in failed:  # its handling raised when this batch was read before: it alone is dead-lettered
                self.to_deadletter(
                    task, item_record(record, item), f"item {n} of {len(items)}: {failed[n]}", "handling_failed"
                )
                continue
            try:
                self.assign(task, item)
            except (DecodeError, UnknownTicketError) as exc:
                # what one item could not take (its group's or ticket's stored state) is that item's dead letter,
                # as it was when each hop was a record: the items before it stay applied, the ones after it apply
                kind = reason_kind(exc)
                self.to_deadletter(task, item_record(record, item), f"item {n} of {len(items)}: {exc}", kind)
            except Exception as exc:
                if len(items) == 1:  # a record of one: the driver's poison handling, as for any record
                    raise
                # a bug: the transaction goes (the items before it too), and the batch is read again without it
                if len(self.failed_items) >= POISON_MAX:
                    self.failed_items.clear()
                self.failed_items.setdefault(where, {})[n] = f"handling failed: {type(exc).__name__}"
                raise PartFailed(f"item {n} of {len(items)}") from exc

    def assign(self, task: Task, item: TicketInput) -> None:
        group = item.group_key.encode()
        current = self.key_state(task, group)
        home = Home(task.partition, self.partitions)
        after, out = assign_step(current, item, self.deps.routing.current.reopen_window, home)
        if not out:  # PagerDuty answers such an event 202 too; here it is logged and counted, not silently dropped
            log.info("resolved_without_open_ticket", group=item.group_key, status=item.event.status.value)
            self.unmatched.labels(status=item.event.status.value, source=item.event.source).inc()
        self.set_key_state(task, group, current, after)  # first: the ticket's changes may move it, in place
        if out and hands_over_in_place(after, out[0].key):
            self.ticket_input(task, out[0].key, item)
        else:
            self.send_out(task, out)

    def on_ticket_input(self, task: Task, record: Record) -> None:
        ticket_id = record.key.decode() if record.key is not None else ""
        self.ticket_input(task, ticket_id, decode_input(record.value or b""))

    def ticket_input(self, task: Task, ticket_id: str, item: TicketInput) -> None:
        """An event applied to its ticket by the ticket's single writer (from the ticket-inputs topic, or handed
        over in place by the group's task when that is the ticket's own)."""
        ev = item.event
        bind_ids(trace_id=ev.trace_id, event_id=ev.event_id, ticket_id=ticket_id)
        record_ = self.record(task, ticket_id)
        key = member_key(ticket_id, ev.dedup_key)
        member = task.load(MEMBERS, key, Member.decode)
        new, after, changes = ticket_step(record_, member, ticket_id, item, datetime.now(UTC), self.config())
        if after is not None and after != member:
            task.store(MEMBERS, key, after, Member.encode)
        self.changed(task, ticket_id, record_, new, changes)

    def count_change(self, change: str, team: str) -> None:
        """``ticket_changes`` counted, its children kept (``labels`` costs 1.5 µs, once an event in a storm)."""
        child = self._counted.get((change, team))
        if child is None:
            child = self._counted[(change, team)] = self.ticket_changes.labels(change=change, team=team)
        child.inc()

    def on_command(self, task: Task, record: Record) -> None:
        cmd = decode(Command, record.value)
        bind_ids(trace_id=cmd.trace_id, ticket_id=cmd.ticket_id)
        self.command(task, cmd.ticket_id, cmd, datetime.now(UTC))

    def command(self, task: Task, ticket_id: str, cmd: Command, now: datetime) -> None:
        before = self.record(task, ticket_id)
        new, changes = command_step(before, cmd, now, self.config())
        self.changed(task, ticket_id, before, new, changes)

    def punctuate(self, task: Task, now: float) -> None:
        """A tick command for each ticket of this partition with something due; the ticket's writer (this task,
        in this transaction) decides what it means."""
        at = datetime.fromtimestamp(now, UTC)
        for key, raw in task.items(HEARTBEATS):
            try:
                after, missing = on_tick(Heartbeat.decode(raw), at, new_trace_id())
            except (ValueError, KeyError, TypeError, OverflowError):  # not written by this code: forgotten, not fired
                log.error("heartbeat_unreadable", heartbeat=key.decode(errors="replace"))  # noqa: TRY400
                task.delete(HEARTBEATS, key)
                continue
            if missing is not None:
                task.store(HEARTBEATS, key, after, Heartbeat.encode)
                bind_ids(trace_id=missing.trace_id, event_id=missing.event_id)
                log.warning("heartbeat_missing", heartbeat=after.name, last_beat=after.last_beat.isoformat())
                self.route(task, missing)
        for key, raw in task.items(TIMERS):
            try:
                due = datetime.fromisoformat(raw.decode())
            except ValueError:  # not written by this code: forgotten, not fired
                log.error("timer_unreadable", ticket_id=key.decode(errors="replace"))  # noqa: TRY400
                task.delete(TIMERS, key)
                continue
            if due > at:
                continue
            ticket_id = key.decode()
            bind_ids(ticket_id=ticket_id)
            try:
                self.command(task, ticket_id, tick_command(ticket_id, due, at), at)
            except UnknownTicketError:
                task.delete(TIMERS, key)

    # -- state and outputs -------------------------------------------------------------------------------------

    @staticmethod
    def record(task: Task, ticket_id: str) -> TicketRecord | None:
        return task.load(TICKETS, ticket_id.encode(), decode_record)

    def changed(
        self,
        task: Task,
        ticket_id: str,
        before: TicketRecord | None,
        new: TicketRecord | None,
        changes: list[TicketEvent],
    ) -> None:
        self.send_out(task, changes_out(ticket_id, changes))
        for change in changes:
            self.count_change(change.change.value, change.ticket.team)
            # a plain occurrence (an alert joining a ticket) at debug: a storm would log a line per alert
            (log.debug if folds(change) else log.info)(
                "ticket_changed", change=change.change.value, version=change.ticket.version
            )
        if new is None or not (changes or new is not before):
            return
        key = ticket_id.encode()
        task.store(TICKETS, key, new, encode)
        moved, due = timer_change(before.ticket if before is not None else None, new.ticket)
        if moved and due is not None:
            task.put(TIMERS, key, due.isoformat().encode())
        elif moved:
            task.delete(TIMERS, key)

    @staticmethod
    def key_state(task: Task, key: bytes) -> KeyState | None:
        return task.load(ASSIGNMENTS, key, decode_key_state)

    @staticmethod
    def set_key_state(task: Task, key: bytes, before: KeyState | None, after: KeyState | None) -> None:
        if after == before:
            return
        if after is None:
            task.remove(ASSIGNMENTS, key)
        else:
            task.store(ASSIGNMENTS, key, after, encode_key_state)

    def send_out(self, task: Task, records: list[Out]) -> None:
        for out in records:
            if isinstance(out.value, KeyUpdate) and self.key_update_in_place(task, out.value):
                continue
            if out.to == "grouped":  # one record per partition and transaction: ~50 µs a record saved
                key = out.key.encode()
                task.send_batched(
                    self.topic_of[out.to], partition_of(key, self.partitions), key, encode_record(out.value)
                )
                continue
            if isinstance(out.value, TicketEvent) and folds(out.value):
                where = self.topic_of[out.to]
                task.send_folded(where, out.key.encode(), Occurrences.of(out.value), fold_occurrences, self.told)
                continue
            value = encode_record(out.value)
            task.send(self.topic_of[out.to], out.key.encode(), value, make_headers(**dict(out.ids)))

    @staticmethod
    def told(occurrences: Occurrences) -> tuple[bytes, list[tuple[str, bytes]]]:
        event = occurrences.event()
        return encode_change(event), make_headers(trace_id=event.trace_id, ticket_id=event.ticket.ticket_id)

    def to_deadletter(self, task: Task, record: Record, reason: str, kind: ReasonKind) -> None:
        task.dead_letter(self.deadletter, SERVICE, record, reason, kind)


@dataclass(frozen=True, slots=True)
class Watches:
    """How often the router's watches look (seconds; 0: that watch is off)."""

    risk_every_s: float = 0.0
    handover_every_s: float = 0.0


class Router:
    """The router's process: the exactly-once driver running RouterProcessor, the SQL projection of tickets and
    escalations, and the timer that reloads the configuration and the on-call overrides."""

    def __init__(
        self, deps: RouterDeps, tx: TxConfig, projection: DriverConfig, watches: Watches | None = None
    ) -> None:
        self.deps = deps
        self.processor = RouterProcessor(deps)
        self.tx = tx
        self.projection = projection
        self.watches = watches or Watches()
        self.past_rows: list[tuple[str, str, datetime, str, str | None]] = []
        self.sender = KafkaSender(tx.bootstrap)  # the watches' producer
        self.risk = RiskWatch(deps.projects, deps.engine, deps.topics.events.name, self.sender, deps.registry)
        self.handover = HandoverWatch(deps.projects, deps.engine, deps.topics, self.sender, deps.registry)
        registry = deps.registry
        self.projected = counter(
            registry, "ticketloop_router_projected_events_total", "Ticket events and escalations written to SQL"
        )
        self.refused = counter(
            registry,
            "ticketloop_router_projection_refused_total",
            "Ticket events and escalations the SQL read model refused (logged and left out)",
        )
        self.reloads = counter(
            registry, "ticketloop_router_config_reloads_total", "Routing file changes seen", ["result"]
        )
        registry.register(ProjectGauges(deps.projects))

    async def run(self, stop: asyncio.Event) -> None:
        driver = TransactionalDriver(self.tx, self.processor, metrics=self.deps.stream)
        project = BatchDriver(self.projection, self.project, metrics=self.deps.stream)
        reload = asyncio.create_task(every(2.0, self.reload, stop, "router-reload-config"))
        first = asyncio.create_task(self.refresh_past())  # off the start: the driver does not wait for it
        past = asyncio.create_task(every(PAST_REFRESH_S, self.refresh_past, stop, "router-past-tickets"))
        w = self.watches
        watching = [  # 0 turns a watch off: no task at all (every(0) would spin)
            asyncio.create_task(every(seconds, job, stop, name))
            for seconds, job, name in (
                (w.risk_every_s, self.risk.round, "router-risk-watch"),
                (w.handover_every_s, self.handover.round, "router-handover-watch"),
            )
            if seconds
        ]
        projecting = asyncio.create_task(project.run(stop))
        projecting.add_done_callback(lambda task: self.projection_ended(task, stop))
        try:
            await driver.run(stop)
        finally:
            stop.set()
            await asyncio.gather(reload, first, past, projecting, *watching, return_exceptions=True)
            await self.sender.stop()

    @staticmethod
    def projection_ended(task: asyncio.Task[None], stop: asyncio.Event) -> None:
        """The SQL projection stopped: by a stop, or by a bug, which stops the worker too (to be restarted) rather
        than leave the read model behind while the router goes on."""
        if not task.cancelled() and task.exception() is not None:
            log.error("projection_died", error=type(task.exception()).__name__)
            stop.set()

    async def refresh_past(self) -> None:
        """The recently resolved tickets new ones are compared with, read again (off the loop) and indexed."""
        models = self.deps.text_models
        if models is None:
            return
        try:
            rows = await asyncio.to_thread(db.resolved_tickets, self.deps.engine, PAST_TICKETS)
        except SQLAlchemyError as exc:
            log.warning("resolved_tickets_unavailable_keeping_last", error=str(exc))
            return
        if rows == self.past_rows:  # nothing resolved since the last look: the index stands
            return
        self.processor.past = await asyncio.to_thread(past_tickets, rows, models)
        self.past_rows = rows

    async def reload(self) -> None:
        d = self.deps
        try:
            d.overrides = await asyncio.to_thread(db.list_overrides, d.engine, since=datetime.now(UTC))
        except SQLAlchemyError as exc:
            log.warning("overrides_unavailable_keeping_last", error=str(exc))
        await poll_watchers((d.routing, d.projects, d.teams), self.reloads)

    async def project(self, records: list[Record]) -> None:
        """Ticket events and escalations into the SQL read model, a batch in one transaction (idempotent: a
        ticket's row moves only forward by version, its timeline is keyed by event). A record that does not
        decode is logged and skipped: the router and sla wrote it, and dead-lettered nothing they could not."""
        escalations_topic = self.deps.topics.escalations.name
        changes: list[TicketEvent] = []
        escalations: list[Escalation] = []
        for r in records:
            try:
                if r.topic == escalations_topic:
                    escalations.append(decode(Escalation, r.value))
                else:
                    changes.append(decode(TicketEvent, r.value))
            except DecodeError as exc:
                log.error("projection_skipped", topic=r.topic, offset=r.offset, error=str(exc))  # noqa: TRY400
        if not (changes or escalations):
            return
        await self.write(changes, escalations)
        self.projected.inc(len(changes) + len(escalations))

    async def write(self, changes: list[TicketEvent], escalations: list[Escalation]) -> None:
        """One batch into SQL. While the database is away or busy it is retried, never dropped (the batch's
        offsets are committed only once it is written). A batch the database refuses for what it holds is split
        until the one record it refuses is found; that record is logged, counted and left out (it stays on its
        topic, and the ticket's next change brings its row forward), so one record never stops the read model."""
        delay = 0.5
        while True:
            try:
                await asyncio.to_thread(db.project, self.deps.engine, changes, escalations)
                return
            except SQLAlchemyError as exc:
                if not db.is_transient(exc):
                    refusal = type(exc).__name__
                    break
                log.warning("projection_failed_retrying", error=type(exc).__name__, retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        if len(changes) + len(escalations) == 1:
            one = changes[0].change_id if changes else escalations[0].escalation_id
            log.error("projection_refused_record", record=one, error=refusal)
            self.refused.inc()
            return
        if changes and escalations:  # the two kinds apart first: a half of one change and one escalation is itself
            await self.write(changes, [])
            await self.write([], escalations)
            return
        half_c, half_e = len(changes) // 2, len(escalations) // 2
        await self.write(changes[:half_c], escalations[:half_e])
        await self.write(changes[half_c:], escalations[half_e:])
