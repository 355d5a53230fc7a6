"""The sla worker on the exactly-once driver (shared/streaming/transactional.py): thin shells around
services.sla.clocks, firing and outcomes.

Each task (partition p of the tickets topic) holds the clocks of its tickets in its ``clocks`` table, each clock
packed (services.sla.storage, its next due time in a header), and a timer index over their due times
(services.sla.timers), rebuilt from the table whenever the task is built. Ticket events move the clocks; the
driver's punctuation (every ``timer_s``) pops the clocks that are due and fires them in the task's transaction:
the escalation, the clock's new state and the input offsets commit together, so a crash neither loses an
escalation nor repeats one. No proposal crosses a topic any more (the faust worker sent each due clock through
``sla-due`` to its own agent); records still on that topic from before are fired as they were meant to be.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.sla.clocks import Clock, ClockDue, finished, on_ticket_event
from services.sla.firing import fire_due
from services.sla.outcomes import Outcome, outcomes
from services.sla.policy import SlaConfig
from services.sla.storage import due_times, due_ts, pack, unpack
from services.sla.timers import TimerIndex
from shared.events import Ticket, TicketEvent
from shared.infra.logging import bind_ids, get_logger, ids_from_headers, make_headers
from shared.infra.metrics import counter, gauge, histogram
from shared.streaming.codec import DecodeError, decode, encode
from shared.streaming.driver import Record
from shared.streaming.stream_metrics import StreamMetrics
from shared.streaming.topics import Topics
from shared.streaming.transactional import Task, TransactionalDriver, TxConfig

log = get_logger(__name__)
SERVICE = "sla"
CLOCKS = "clocks"
# 1 min .. 3 days: acknowledgements in minutes, resolutions in hours and days
RESPONSE_BUCKETS = (60, 300, 900, 1800, 3600, 4 * 3600, 8 * 3600, 24 * 3600, 3 * 24 * 3600)
LATENESS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
MAX_FIRES_PER_CLOCK = 64  # levels, repeats and warnings overdue at once (after a long outage), per look


@dataclass
class SlaDeps:
    topics: Topics
    config: SlaConfig
    registry: CollectorRegistry
    probe_interval_s: float = 0.0
    """> 0: a probe timer at this interval measures how late the event loop wakes it (the benchmark's baseline)."""
    stream: StreamMetrics | None = None
    """The consumer's lag and the dead letters, counted (made in main.py; None: not counted)."""


@dataclass(frozen=True)
class SlaMetrics:
    fired: Counter
    warned: Counter
    breached: Counter
    to_acknowledge: Histogram
    to_resolve: Histogram
    acknowledged: Counter
    resolved: Counter
    lateness: Histogram
    armed: Gauge

    @classmethod
    def register(cls, registry: CollectorRegistry) -> SlaMetrics:
        return cls(
            fired=counter(
                registry,
                "ticketloop_sla_escalations_total",
                "Escalations emitted",
                ["team", "priority", "customer", "level"],
            ),
            warned=counter(
                registry,
                "ticketloop_sla_warnings_total",
                "Pre-breach warnings emitted",
                ["team", "priority", "customer", "clock"],
            ),
            breached=counter(
                registry,
                "ticketloop_sla_breaches_total",
                "Deadlines passed, by clock: acknowledge, resolve, first_response, update",
                ["team", "priority", "customer", "clock"],
            ),
            to_acknowledge=histogram(
                registry,
                "ticketloop_sla_time_to_acknowledge_seconds",
                "From the acknowledge clock's start to the acknowledgement",
                ["team", "priority", "customer", "project"],
                buckets=RESPONSE_BUCKETS,
            ),
            to_resolve=histogram(
                registry,
                "ticketloop_sla_time_to_resolve_seconds",
                "From opening to resolution",
                ["team", "priority", "customer", "project"],
                buckets=RESPONSE_BUCKETS,
            ),
            acknowledged=counter(
                registry,
                "ticketloop_sla_acknowledged_total",
                'Acknowledgements, by whether they met the target (compliance = within_target="true" / all)',
                ["team", "priority", "customer", "project", "within_target"],
            ),
            resolved=counter(
                registry,
                "ticketloop_sla_resolved_total",
                "Resolutions against a resolve target, by whether they met it"
                ' (compliance = within_target="true" / all)',
                ["team", "priority", "customer", "project", "within_target"],
            ),
            lateness=histogram(
                registry,
                "ticketloop_sla_timer_lateness_seconds",
                "How late an escalation fired after its due time",
                buckets=LATENESS_BUCKETS,
            ),
            armed=gauge(registry, "ticketloop_sla_armed_clocks_count", "Clocks with something due, on this worker"),
        )


class TaskClocks:
    """One task's clocks table as the sla uses it: each clock stored packed, the timer index over their due times
    (read from the stored values' headers, services.sla.storage), and how many have something due."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.index = TimerIndex[bytes](self.due_of)
        data = task.tables[CLOCKS]  # a dict's keys and values come in the same order
        self.armed = self.index.rebuild_columns(list(data.keys()), due_times(list(data.values())))

    def due_of(self, key: bytes) -> float | None:
        raw = self.task.tables[CLOCKS].get(key)
        return None if raw is None else due_ts(raw)

    def get(self, key: bytes) -> Clock | None:
        raw = self.task.get(CLOCKS, key)
        return None if raw is None else unpack(raw)

    def put(self, key: bytes, clock: Clock) -> None:
        was = self.due_of(key)
        raw = pack(clock)
        self.task.put(CLOCKS, key, raw)
        due = due_ts(raw)
        self.armed += (due is not None) - (was is not None)
        self.index.set_ts(key, due, was=was)

    def delete(self, key: bytes) -> None:
        was = self.due_of(key)
        self.task.delete(CLOCKS, key)
        self.armed -= was is not None
        self.index.set_ts(key, None, was=was)

    def rearm(self, key: bytes) -> None:
        """A clock popped from the index but not changed: due again at its stored time."""
        due = self.due_of(key)
        self.index.set_ts(key, due, was=due)


class SlaProcessor:
    """The sla's work on a task: ticket events move its clocks, the punctuation fires what is due."""

    tables: tuple[str, ...] = (CLOCKS,)

    def __init__(self, deps: SlaDeps, metrics: SlaMetrics) -> None:
        self.deps = deps
        self.metrics = metrics
        self.clocks: weakref.WeakKeyDictionary[Task, TaskClocks] = weakref.WeakKeyDictionary()
        """Per task the driver holds now (a task let go takes its index with it)."""
        self.due_topic = deps.topics.sla_due.name
        self.deadletter = deps.topics.deadletter.name

    @property
    def topics(self) -> tuple[str, ...]:
        return (self.deps.topics.tickets.name, self.due_topic)

    async def loaded(self, task: Task) -> None:
        """The task was (re)built and its table loaded: index its clocks (the driver's ``on_loaded``)."""
        held = self.clocks[task] = TaskClocks(task)
        self.metrics.armed.set(self.armed())
        log.info("clock_index_rebuilt", clocks=held.armed, partition=task.partition)

    def held(self, task: Task) -> TaskClocks:
        held = self.clocks.get(task)
        if held is None:  # not loaded through ``loaded`` (the in-memory broker's tasks)
            held = self.clocks[task] = TaskClocks(task)
        return held

    def armed(self) -> int:
        return sum(held.armed for held in self.clocks.values())

    # -- inputs ------------------------------------------------------------------------------------------------

    def process(self, task: Task, records: list[Record]) -> None:
        held = self.held(task)
        for record in records:
            bind_ids(**ids_from_headers(record.headers))
            try:
                if record.topic == self.due_topic:  # a proposal the faust worker sent before an upgrade
                    proposal = decode(ClockDue, record.value)
                    self.fire(task, held, proposal.ticket_id.encode(), datetime.now(UTC))
                else:
                    self.on_ticket_event(held, decode(TicketEvent, record.value))
            except DecodeError as exc:
                task.dead_letter(self.deadletter, SERVICE, record, str(exc), "undecodable")

    def on_ticket_event(self, held: TaskClocks, ev: TicketEvent) -> None:
        key = ev.ticket.ticket_id.encode()
        clock = held.get(key)
        after = on_ticket_event(clock, ev, self.deps.config)
        self.observe(outcomes(clock, ev), ev.ticket)
        if after is not None and finished(after):
            # the ticket is resolved or closed: the clock is forgotten (a tombstone in the changelog), so the
            # table holds what is open, not everything that ever was; a reopen starts a new clock
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

    def punctuate(self, task: Task, now: float) -> None:
        """Fire every clock of the task that is due (the popped ones that are not, re-armed)."""
        held = self.held(task)
        at = datetime.fromtimestamp(now, UTC)
        for key in held.index.pop_due(at):
            self.fire(task, held, key, at)
        self.metrics.armed.set(self.armed())

    # -- what is due -------------------------------------------------------------------------------------------

    def fire(self, task: Task, held: TaskClocks, key: bytes, now: datetime) -> None:
        """Fire what is due on the clock, in the task's transaction; the clock is stored again (re-armed)."""
        clock = before = held.get(key)
        if clock is None:
            return  # stopped and forgotten since
        if clock.next_due is None or clock.next_due > now:
            held.rearm(key)
            return
        m = self.metrics
        for _ in range(MAX_FIRES_PER_CLOCK):
            escalation, after = fire_due(clock, now)
            if escalation is None:
                break
            bind_ids(trace_id=escalation.trace_id, ticket_id=clock.ticket_id)
            task.send(
                self.deps.topics.escalations.name,
                clock.ticket_id.encode(),
                encode(escalation),
                make_headers(trace_id=escalation.trace_id, ticket_id=clock.ticket_id),
            )
            late = (now - (clock.next_due or now)).total_seconds()
            m.lateness.observe(max(late, 0.0))
            team, priority, customer = escalation.target_team, clock.ticket.priority, clock.ticket.customer or ""
            if escalation.kind == "warning":
                m.warned.labels(team=team, priority=priority, customer=customer, clock=escalation.clock).inc()
            elif escalation.kind == "breach":
                m.breached.labels(team=team, priority=priority, customer=customer, clock=escalation.clock).inc()
            else:
                m.fired.labels(team=team, priority=priority, customer=customer, level=str(escalation.level)).inc()
            log.info(escalation.kind, clock=escalation.clock, level=escalation.level, team=team, late_s=round(late, 3))
            clock = after
        if clock != before:
            held.put(key, clock)
        else:
            held.rearm(key)

    def observe(self, settled: list[Outcome], ticket: Ticket) -> None:
        """Response times and compliance, by team and priority and by the ticket's project and its customer (both
        from projects.yaml, empty outside any project: bounded by the configuration)."""
        m = self.metrics
        who = {
            "team": ticket.team,
            "priority": ticket.priority,
            "customer": ticket.customer or "",
            "project": ticket.project or "",
        }
        for outcome in settled:
            if outcome.kind == "acknowledged":
                m.to_acknowledge.labels(**who).observe(outcome.seconds)
                m.acknowledged.labels(**who, within_target="true" if outcome.within_target else "false").inc()
            else:
                m.to_resolve.labels(**who).observe(outcome.seconds)
                if outcome.within_target is not None:
                    m.resolved.labels(**who, within_target="true" if outcome.within_target else "false").inc()


class Sla:
    """The sla worker: the exactly-once driver around SlaProcessor (and the loop-lateness probe, when asked)."""

    def __init__(self, deps: SlaDeps, tx: TxConfig) -> None:
        self.deps = deps
        self.tx = tx
        self.processor = SlaProcessor(deps, SlaMetrics.register(deps.registry))

    async def run(self, stop: asyncio.Event) -> None:
        driver = TransactionalDriver(self.tx, self.processor, on_loaded=self.processor.loaded, metrics=self.deps.stream)
        probing = asyncio.create_task(self.probe(stop)) if self.deps.probe_interval_s > 0 else None
        try:
            await driver.run(stop)
        finally:
            if probing is not None:
                probing.cancel()
                await asyncio.gather(probing, return_exceptions=True)

    async def probe(self, stop: asyncio.Event) -> None:
        """How late a plain periodic asyncio timer wakes in this worker (the benchmark's baseline for lateness)."""
        probe = histogram(
            self.deps.registry,
            "ticketloop_sla_probe_lateness_seconds",
            "How late a plain periodic asyncio timer in the sla worker wakes (the baseline for timer lateness)",
            buckets=LATENESS_BUCKETS,
        )
        loop = asyncio.get_running_loop()
        interval = self.deps.probe_interval_s
        while not stop.is_set():
            planned = loop.time() + interval
            await asyncio.sleep(interval)
            probe.observe(max(loop.time() - planned, 0.0))
