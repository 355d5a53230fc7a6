"""The sla service's faust agent and timer: thin shells around services.sla.policy.

Clocks live in a changelog-backed table keyed by ticket id. One loop timer per worker, asleep until the earliest
clock is due, takes the clocks that are due from an in-memory index (services.sla.timers, rebuilt from the table
after every rebalance) and proposes them on the ``sla-due`` topic. The clocks agent, the clock's single writer,
fires what is really due: under exactly_once the escalation, the clock's new state and the input offset commit
in one transaction, so a crash neither loses an escalation nor repeats one (a repeated proposal finds the level
already fired).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
from aiokafka.errors import KafkaError
from faust.types.tuples import RecordMetadata
from prometheus_client import CollectorRegistry

from services.sla.clocks import Clock, ClockDue, finished, on_ticket_event
from services.sla.firing import fire_due
from services.sla.outcomes import Outcome, outcomes
from services.sla.policy import SlaConfig
from services.sla.storage import due_times, due_ts, pack, unpack
from services.sla.timers import TimerIndex
from shared.events import Ticket, TicketEvent
from shared.infra.logging import bind_ids, get_logger, ids_from_headers, make_headers
from shared.infra.metrics import counter, gauge, histogram
from shared.streaming.codec import encode
from shared.streaming.snapshots import SnapshotPolicy
from shared.streaming.streams import decode_or_deadletter, emit, raw_table, raw_topic, send
from shared.streaming.topics import Topics

log = get_logger(__name__)
SERVICE = "sla"
# 1 min .. 3 days: acknowledgements in minutes, resolutions in hours and days
RESPONSE_BUCKETS = (60, 300, 900, 1800, 3600, 4 * 3600, 8 * 3600, 24 * 3600, 3 * 24 * 3600)
LATENESS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
MAX_FIRES_PER_PROPOSAL = 64  # levels, repeats and warnings overdue at once (after a long outage), per proposal


class HeldClocks:
    """The clocks table as the sla agent uses it: each clock stored packed (services.sla.storage), the timer index
    over their due times (read from the stored values' headers), and how many have something due."""

    def __init__(self, table: Any, on_armed: Callable[[float], None]) -> None:
        self._table = table
        self._on_armed = on_armed
        self.index = TimerIndex[bytes](self.due_of)
        self.armed = 0

    def due_of(self, key: bytes) -> float | None:
        raw = self._table.data.get(key)
        return None if raw is None else due_ts(raw)

    def get(self, key: bytes) -> Clock | None:
        raw = self._table.get(key)
        return None if raw is None else unpack(raw)

    def put(self, key: bytes, clock: Clock) -> None:
        was = self.due_of(key)
        self._table[key] = raw = pack(clock)
        due = due_ts(raw)
        self.armed += (due is not None) - (was is not None)
        self._set(key, due, was)

    def delete(self, key: bytes) -> None:
        was = self.due_of(key)
        del self._table[key]
        self.armed -= was is not None
        self._set(key, None, was)

    def rearm(self, key: bytes) -> None:
        """A clock popped from the index but not changed: due again at its stored time."""
        due = self.due_of(key)
        self._set(key, due, due)

    def _set(self, key: bytes, due: float | None, was: float | None) -> None:
        self.index.set_ts(key, due, was=was)
        if due is not None:
            self._on_armed(due)

    def rebuild(self) -> None:
        """Index what the table holds now (after a rebalance), from each stored clock's header: nothing is
        decompressed or validated for it. The keys are the table's own key objects."""
        stored = self._table.data  # a dict's keys and values come in the same order
        self.armed = self.index.rebuild_columns(list(stored.keys()), due_times(list(stored.values())))


@dataclass
class SlaDeps:
    topics: Topics
    config: SlaConfig
    registry: CollectorRegistry
    tick_interval_s: float
    probe_interval_s: float = 0.0
    """> 0: a probe timer at this interval measures how late the event loop wakes it (the benchmark's baseline)."""
    snapshots: SnapshotPolicy | None = None
    """Local snapshots of the clocks table (shared/streaming/snapshots.py): a restart then reads only the
    changelog's tail."""


def register(app: faust.App, deps: SlaDeps) -> None:
    t = deps.topics
    escalations = raw_topic(app, t.escalations.name)
    deadletter = raw_topic(app, t.deadletter.name)
    proposals = raw_topic(app, t.sla_due.name, internal=True, partitions=t.partitions)
    inputs = raw_topic(app, t.tickets.name, t.sla_due.name)
    clocks = raw_table(app, "clocks", partitions=t.partitions, consumer_recovery=True, snapshots=deps.snapshots)

    fired = counter(
        deps.registry,
        "ticketloop_sla_escalations_total",
        "Escalations emitted",
        ["team", "priority", "customer", "level"],
    )
    warned = counter(
        deps.registry,
        "ticketloop_sla_warnings_total",
        "Pre-breach warnings emitted",
        ["team", "priority", "customer", "clock"],
    )
    breached = counter(
        deps.registry,
        "ticketloop_sla_breaches_total",
        "Deadlines passed, by clock: acknowledge, resolve, first_response, update",
        ["team", "priority", "customer", "clock"],
    )
    to_acknowledge = histogram(
        deps.registry,
        "ticketloop_sla_time_to_acknowledge_seconds",
        "From the acknowledge clock's start to the acknowledgement",
        ["team", "priority"],
        buckets=RESPONSE_BUCKETS,
    )
    to_resolve = histogram(
        deps.registry,
        "ticketloop_sla_time_to_resolve_seconds",
        "From opening to resolution",
        ["team", "priority"],
        buckets=RESPONSE_BUCKETS,
    )
    acknowledged = counter(
        deps.registry,
        "ticketloop_sla_acknowledged_total",
        'Acknowledgements, by whether they met the target (compliance = within_target="true" / all)',
        ["team", "priority", "customer", "within_target"],
    )
    resolved = counter(
        deps.registry,
        "ticketloop_sla_resolved_total",
        'Resolutions against a resolve target, by whether they met it (compliance = within_target="true" / all)',
        ["team", "priority", "customer", "within_target"],
    )
    lateness = histogram(
        deps.registry,
        "ticketloop_sla_timer_lateness_seconds",
        "How late an escalation fired after its due time",
        buckets=LATENESS_BUCKETS,
    )

    indexed = gauge(deps.registry, "ticketloop_sla_armed_clocks_count", "Clocks with something due, on this worker")
    built_for = [-1]  # the rebalance the index was built after
    wakeup = asyncio.Event()  # set when a clock is armed earlier than the loop means to wake
    wake_at: list[float | None] = [None]

    def on_armed(due: float) -> None:
        if wake_at[0] is None or due < wake_at[0]:
            wakeup.set()

    held = HeldClocks(clocks, on_armed)

    def rebuild_index() -> None:
        held.rebuild()
        built_for[0] = app.rebalancing_count
        log.info("clock_index_rebuilt", clocks=held.armed, rebalance=app.rebalancing_count)

    @clocks.on_recover
    async def recovered() -> None:
        """The partitions (and so the clocks) this worker holds changed and the table holds them now: index
        them at once, and let the timer loop look at once."""
        rebuild_index()
        wakeup.set()

    @app.agent(inputs, name="sla-clocks")
    async def clocks_agent(stream: Any) -> AsyncIterator[None]:
        async for event in stream.events():
            bind_ids(**ids_from_headers(event.headers))
            if event.message.topic == t.sla_due.name:
                proposal = await decode_or_deadletter(ClockDue, event, deadletter, SERVICE)
                if proposal is not None:
                    await fire(proposal, datetime.now(UTC))
                yield None
                continue
            ev = await decode_or_deadletter(TicketEvent, event, deadletter, SERVICE)
            if ev is None:
                yield None
                continue
            key = ev.ticket.ticket_id.encode()
            clock = held.get(key)
            after = on_ticket_event(clock, ev, deps.config)
            observe(outcomes(clock, ev), ev.ticket)
            if after is not None and finished(after):
                # the ticket is resolved or closed: the clock is forgotten (a tombstone in the changelog), so
                # the table holds what is open, not everything that ever was; a reopen starts a new clock.
                # (A finished clock always had one before: no clock is started for a ticket that is not open.)
                held.delete(key)
                log.info("clock_finished")
            elif after is not None and after != clock:
                bind_ids(trace_id=ev.trace_id, ticket_id=ev.ticket.ticket_id)
                held.put(key, after)
                if clock is None:
                    log.info(
                        "clock_started",
                        deadline=after.deadline.isoformat(),
                        policy=after.policy,
                        policy_version=after.policy_version,
                    )
                elif after.state != clock.state:
                    log.info("clock_" + after.state)
            yield None

    if deps.probe_interval_s > 0:
        probe = histogram(
            deps.registry,
            "ticketloop_sla_probe_lateness_seconds",
            "How late a plain periodic asyncio timer in the sla worker wakes (the baseline for timer lateness)",
            buckets=LATENESS_BUCKETS,
        )

        @app.task
        async def probe_loop() -> None:
            loop = asyncio.get_running_loop()
            while True:
                planned = loop.time() + deps.probe_interval_s
                await asyncio.sleep(deps.probe_interval_s)
                probe.observe(max(loop.time() - planned, 0.0))

    @app.task
    async def timer_loop() -> None:
        """The one loop timer: sleeps until the earliest clock is due (at most tick_interval_s, so a rebalance
        or a recovery is noticed), woken early when a sooner clock is armed."""
        while True:
            try:
                await propose_due()
            except KafkaError as exc:  # the broker is away: the clocks stay armed, try again next tick
                log.warning("proposing_due_clocks_failed", error=str(exc))
            indexed.set(held.armed)
            now = datetime.now(UTC)
            nxt = held.index.next_due()
            delay = deps.tick_interval_s if nxt is None else (nxt - now).total_seconds()
            delay = min(max(delay, 0.0), deps.tick_interval_s)
            wake_at[0] = now.timestamp() + delay
            wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), delay)

    async def propose_due() -> None:
        tables: Any = app.tables  # faust types TableManagerT without its recovery service
        if not tables.recovery.completed.is_set() or app.rebalancing:
            return
        if built_for[0] != app.rebalancing_count:  # recovered without telling the table (not seen; a fallback)
            rebuild_index()
        now = datetime.now(UTC)
        due: list[tuple[bytes, Clock]] = []
        for key in held.index.pop_due(now):
            clock = held.get(key)
            if clock is None:
                continue  # its partition moved away
            next_due = clock.next_due
            if next_due is not None and next_due <= now:
                due.append((key, clock))
            else:
                held.rearm(key)
        pending = sorted(due, key=lambda kc: kc[1].next_due or now)
        sent: list[tuple[bytes, Awaitable[RecordMetadata]]] = []
        error: KafkaError | None = None
        for key, clock in pending:  # all sent at once, then all acknowledged: one round trip for a burst
            proposal = ClockDue(ticket_id=clock.ticket_id, due=clock.next_due or now, proposed_at=now)
            headers = make_headers(ticket_id=clock.ticket_id)
            try:
                sent.append((key, await send(proposals, clock.ticket_id, encode(proposal), headers)))
            except KafkaError as exc:
                error = exc
                break
        failed = [key for key, _ in pending[len(sent) :]]
        for key, fut in sent:
            try:
                await fut
            except KafkaError as exc:
                error = exc
                failed.append(key)
        for key in failed:  # not acknowledged by the broker: due again next tick
            held.rearm(key)
        if error is not None:
            raise error

    def observe(settled: list[Outcome], ticket: Ticket) -> None:
        team, priority = ticket.team, ticket.priority
        for outcome in settled:
            if outcome.kind == "acknowledged":
                to_acknowledge.labels(team=team, priority=priority).observe(outcome.seconds)
                within = "true" if outcome.within_target else "false"
                acknowledged.labels(
                    team=team, priority=priority, customer=ticket.customer or "", within_target=within
                ).inc()
            else:
                to_resolve.labels(team=team, priority=priority).observe(outcome.seconds)
                if outcome.within_target is not None:
                    within = "true" if outcome.within_target else "false"
                    resolved.labels(
                        team=team, priority=priority, customer=ticket.customer or "", within_target=within
                    ).inc()

    async def fire(proposal: ClockDue, now: datetime) -> None:
        """Fire what is due on the proposed clock, in the handling of the proposal; the clock is re-armed."""
        key = proposal.ticket_id.encode()
        clock = before = held.get(key)
        if clock is None:
            return  # stopped and forgotten since the proposal
        for _ in range(MAX_FIRES_PER_PROPOSAL):
            escalation, after = fire_due(clock, now)
            if escalation is None:
                break
            bind_ids(trace_id=escalation.trace_id, ticket_id=clock.ticket_id)
            await emit(
                escalations,
                clock.ticket_id,
                encode(escalation),
                make_headers(trace_id=escalation.trace_id, ticket_id=clock.ticket_id),
            )
            late = (now - (clock.next_due or now)).total_seconds()
            lateness.observe(max(late, 0.0))
            team, priority, customer = escalation.target_team, clock.ticket.priority, clock.ticket.customer or ""
            if escalation.kind == "warning":
                warned.labels(team=team, priority=priority, customer=customer, clock=escalation.clock).inc()
            elif escalation.kind == "breach":
                breached.labels(team=team, priority=priority, customer=customer, clock=escalation.clock).inc()
            else:
                fired.labels(team=team, priority=priority, customer=customer, level=str(escalation.level)).inc()
            log.info(escalation.kind, clock=escalation.clock, level=escalation.level, team=team, late_s=round(late, 3))
            clock = after
        if clock != before:
            held.put(key, clock)
        else:
            held.rearm(key)
