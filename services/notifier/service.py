"""The notifier worker: thin shells around services.notifier.pipeline, stages and lanes.

Per batch of ticket and escalation events (shared/streaming/driver.py: consumed with aiokafka, no per-event stream
machinery): decode → mute → plan → hand to the target lanes, which send at once when they can. Before the
batch's offsets are committed (``Dispatcher.checkpoint``), what the lanes have held for ``hold_s`` (a slow or
rate-limited target) is written to the outbox, and a failed send is written at once; for what they hold only
briefly, the commit stops below its event instead, so a crash reads that event again. A slow or dead endpoint
holds only its own lane, and nothing accepted is lost. Sent first, written only when it waits long: a paced
stream's notification costs no outbox row, nor does a moment's backlog.

A record the worker may be reading again — below where its partition ended when it was assigned, so a previous
owner may have handled it without committing — is planned the careful way: into the outbox first, dropping what
the outbox or the delivery log already has (notification ids are stable), and sent from there.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from services.notifier.channels.base import NOTIFICATION_ID, Channel, Http
from services.notifier.channels.registry import REGISTRY
from services.notifier.config import NotifyConfig
from services.notifier.lanes import HOLD_S, Dispatcher, LaneDeps
from services.notifier.pipeline import (
    Dispatch,
    LinkIssuer,
    Notice,
    SolvedLinker,
    SurveyLinker,
    in_channel_parts,
    notice_for_escalation,
    notice_for_handover,
    notices_for_ticket_event,
    notifies,
    plan_notice,
    suppressed,
    with_actions,
    with_mention,
)
from services.notifier.stages import BreakerPolicy, RetryPolicy, message_to_json
from shared.events import Delivery, Escalation, HandoverDigest, Ticket, TicketEvent
from shared.infra.config import ConfigWatcher, poll_watchers
from shared.infra.logging import bind_ids, get_logger, ids_from_headers, make_headers
from shared.infra.metrics import check_name, counter
from shared.rules.muting import MuteState, MutingConfig, mute_for
from shared.rules.oncall import TeamsConfig, on_call
from shared.rules.silences import ticket_labels
from shared.store import db, outbox
from shared.store.journal import Journal
from shared.store.outbox import OutboxItem
from shared.store.runner import SqlRunner
from shared.streaming.codec import DecodeError, decode, encode
from shared.streaming.deadletters import dead_letter, dead_letter_of
from shared.streaming.driver import BatchDriver, DriverConfig, Partition, Record
from shared.streaming.runtime import every
from shared.streaming.stream_metrics import StreamMetrics
from shared.streaming.topics import Topics

R = TypeVar("R")
P = ParamSpec("P")
log = get_logger(__name__)
SERVICE = "notifier"
EMAIL_MAX_BYTES = 100_000


@dataclass
class NotifierDeps:
    topics: Topics
    config: NotifyConfig
    channels: Mapping[str, Channel]
    engine: Engine
    registry: CollectorRegistry
    retry: RetryPolicy
    breaker: BreakerPolicy
    public_url: str
    muting: ConfigWatcher[MutingConfig]
    teams: ConfigWatcher[TeamsConfig]
    links: LinkIssuer | None = None
    surveys: SurveyLinker | None = None
    """signed satisfaction survey links for reporters (None: no survey is mailed)"""
    solved: SolvedLinker | None = None
    """signed "this solved it / it did not" links under a suggested workaround (None: none)"""
    http: Http | None = None
    """The channels' HTTP client, closed when the worker stops."""
    stream: StreamMetrics | None = None
    """The consumer's lag and the dead letters, counted (made in main.py; None: not counted)."""
    sql: SqlRunner | None = None
    """The runner of the notifier's SQL calls, shared with the channels' message refs (None: one of its own)."""
    journal: Journal | None = None
    """Where a send's outcome is made durable at once (shared/store/journal.py; None: the database, in lockstep)."""
    hold_s: float = HOLD_S
    """How long a notification sent first may wait in a lane before a commit writes it to the outbox (until then
    the commit stops below its event: services/notifier/stages.py ``at_commit``)."""


class LaneGauges(Collector):
    """``ticketloop_notifier_pending_count{channel}`` and ``ticketloop_notifier_breakers_open_count{channel}``."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    def collect(self) -> Any:
        pending = GaugeMetricFamily(
            check_name("ticketloop_notifier_pending_count"), "Notifications held in lanes", labels=["channel"]
        )
        for kind, n in sorted(self.dispatcher.pending().items()):
            pending.add_metric([kind], n)
        breakers = GaugeMetricFamily(
            check_name("ticketloop_notifier_breakers_open_count"), "Targets whose circuit is open", labels=["channel"]
        )
        for kind, n in sorted(self.dispatcher.open_breakers().items()):
            breakers.add_metric([kind], n)
        yield pending
        yield breakers


def outbox_items(
    dispatches: Sequence[Dispatch],
    team_of: Mapping[str, str],
    source: Partition,
    offset: int,
    now: datetime,
    seq: Iterator[int],
) -> list[OutboxItem]:
    """The outbox rows of an event's dispatches (the event at ``offset`` of ``source``), numbered in planning
    order by ``seq``."""
    return [
        OutboxItem(
            notification_id=d.notification_id,
            seq=next(seq),
            ticket_id=d.ticket_id,
            team=team_of.get(d.notification_id, ""),
            channel=d.channel,
            target=d.target,
            kind=d.message.kind,
            # the id in the message too: a receiver that keeps the ids it saw drops a repeat (a notifier killed
            # mid-send repeats what it had in flight)
            payload=message_to_json(replace(d.message, data={**d.message.data, NOTIFICATION_ID: d.notification_id})),
            source_topic=source[0],
            source_partition=source[1],
            created_at=now,
            due_at=now,
            source_offset=offset,
        )
        for d in dispatches
    ]


def replayed(record: Record, replay_until: Mapping[Partition, int]) -> bool:
    """Whether a record may have been handled before: it lies below where its partition ended when this worker
    was assigned it (a previous owner may have sent its notifications and died before committing). A partition
    whose end is not known counts as read again throughout."""
    end = replay_until.get((record.topic, record.partition))
    return end is None or record.offset < end


@dataclass(frozen=True, slots=True)
class Planned:
    """A batch's notifications: ``new`` ones (not in the outbox: sent first), ``saved`` ones (records read again:
    written to the outbox, what it or the delivery log had dropped) and the ``muted`` ones' records."""

    new: list[OutboxItem]
    saved: list[OutboxItem]
    muted: list[Delivery]


class Notifier:
    """The notifier worker: a batched consumer of the tickets and escalations topics (shared/streaming/driver.py)
    that plans each batch's notifications into the outbox in one SQL transaction and hands them to the lanes."""

    def __init__(self, deps: NotifierDeps, driver: DriverConfig, bootstrap: str) -> None:
        self.deps = deps
        self.driver_config = driver
        self.bootstrap = bootstrap
        self._producer: AIOKafkaProducer | None = None  # made in run(): aiokafka needs the running loop
        self.assigned: set[Partition] = set()
        self.replay_until: dict[Partition, int] = {}
        """Per assigned partition: where it ended when assigned (records below may be read again)."""
        self._driver: BatchDriver | None = None
        self.seq = itertools.count(time.time_ns() // 1000)
        registry = deps.registry
        self.runner = deps.sql if deps.sql is not None else SqlRunner(deps.engine)
        self.outcomes = counter(
            registry, "ticketloop_notifier_deliveries_total", "Notification outcomes", ["channel", "kind", "status"]
        )
        self.digests = counter(
            registry, "ticketloop_notifier_digests_total", "Digests sent under a rate limit", ["channel"]
        )
        self.reloads = counter(
            registry, "ticketloop_notifier_config_reloads_total", "Config file changes seen", ["result"]
        )
        self.max_bytes = {**{k: kind.max_bytes for k, kind in REGISTRY.items()}, "email": EMAIL_MAX_BYTES}
        """What one message of each channel kind may hold."""
        self.dispatcher = Dispatcher(
            LaneDeps(
                channels=deps.channels,
                limits={k: kind.limit for k, kind in REGISTRY.items()},
                in_flight={k: kind.in_flight for k, kind in REGISTRY.items()},
                max_bytes=self.max_bytes,
                engine=deps.engine,
                retry=deps.retry,
                breaker=deps.breaker,
                on_records=self.on_records,
                on_give_up=self.on_give_up,
                on_digest=lambda kind, _n: self.digests.labels(channel=kind).inc(),
                sql=self.runner,
                journal=deps.journal,
                hold_s=deps.hold_s,
                share=self.share,
            )
        )
        registry.register(LaneGauges(self.dispatcher))

    def share(self) -> tuple[int, int]:
        """The partitions this worker is assigned, of all its group reads: its part of each vendor's limit."""
        t = self.deps.topics
        total = t.tickets.partitions + t.escalations.partitions + t.handovers.partitions
        return (len(self.assigned), total) if self.assigned else (total, total)

    # --- the shell around Kafka -----------------------------------------------------------------------------

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("the notifier is not running")
        return self._producer

    async def run(self, stop: asyncio.Event) -> None:
        # delivery records and dead letters are on nobody's latency path: batched for 10 ms, a produce request
        # per round of outcomes instead of one per record (the notifier's largest cost in a paced stream)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True, linger_ms=10
        )
        await self.producer.start()
        recovered = await self.dispatcher.writer.recover()
        if recovered:
            log.info("journal_recovered", finishes=recovered)
        # before any lane starts its rate window: this start counts in it (the worker before may have had a send
        # on its way to each target, not written down)
        await self.sql(outbox.record_start, f"start-{secrets.token_hex(8)}", datetime.now(UTC))
        driver = self._driver = BatchDriver(
            self.driver_config, self.handle, self.on_assigned, self.on_revoked, self.checkpoint, self.deps.stream
        )
        timer = asyncio.create_task(every(2.0, self.reload, stop, "notifier-reload-config"))
        try:
            await driver.run(stop)
        finally:
            timer.cancel()
            await asyncio.gather(timer, return_exceptions=True)
            await self.dispatcher.stop()
            await self.producer.stop()
            self.runner.dispose()
            if self.deps.http is not None:
                await self.deps.http.close()

    async def publish(self, topic: str, key: str, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        await self.producer.send_and_wait(topic, value, key=key.encode(), headers=headers)

    async def on_assigned(self, partitions: set[Partition]) -> None:
        t = self.deps.topics
        mine = {tp for tp in partitions if tp[0] in (t.tickets.name, t.escalations.name, t.handovers.name)}
        self.dispatcher.revoke(self.assigned - mine)
        new = mine - self.assigned
        self.assigned = mine
        owned, total = self.share()
        log.info("partitions_assigned", partitions=owned, of=total)
        await self.mark_replays(new)
        loaded = await self.dispatcher.assign(new)
        if loaded:
            log.info("outbox_loaded", notifications=loaded, partitions=len(new))

    async def mark_replays(self, partitions: set[Partition]) -> None:
        """Remember where newly assigned partitions end: what lies below may have been handled already. When the
        broker does not say, every record of theirs is taken as a replay (the careful way, only slower)."""
        for tp in partitions:
            self.replay_until.pop(tp, None)
        if not partitions or self._driver is None:
            return
        # bounded: the member's heartbeat is paused while the group's assignment callback runs
        within_s = self.driver_config.session_timeout_s / 3
        try:
            self.replay_until.update(await asyncio.wait_for(self._driver.end_offsets(partitions), within_s))
        except (KafkaError, TimeoutError) as exc:
            log.warning("end_offsets_unknown", error=type(exc).__name__, partitions=len(partitions))

    async def on_revoked(self, partitions: set[Partition]) -> None:
        self.dispatcher.revoke(partitions)
        self.assigned -= partitions
        for tp in partitions:
            self.replay_until.pop(tp, None)

    async def checkpoint(self) -> dict[Partition, int]:
        """Before the driver commits: what the lanes have held a while and the outbox does not is written to it;
        returns where each partition's commit stops for what they hold only in memory."""
        return await self.dispatcher.checkpoint()

    async def reload(self) -> None:
        await poll_watchers((self.deps.muting, self.deps.teams), self.reloads)
        try:
            await self.runner.checkpoint_wal()
        except SQLAlchemyError as exc:  # the next round tries again; the log only grows meanwhile
            log.warning("wal_checkpoint_failed", error=type(exc).__name__)
        redriven = await self.dispatcher.redrive(self.assigned)
        if redriven:
            log.info("outbox_redriven", notifications=redriven)

    # --- what the lanes report --------------------------------------------------------------------------------

    async def on_records(self, records: Sequence[Delivery]) -> None:
        for delivery in records:
            self.outcomes.labels(channel=delivery.channel, kind=delivery.kind, status=delivery.status).inc()
            log.info(
                "delivery",
                channel=delivery.channel,
                target=delivery.recipient,
                kind=delivery.kind,
                status=delivery.status,
                attempts=delivery.attempts,
                ticket_id=delivery.ticket_id,
            )
        name = self.deps.topics.deliveries.name
        sent = [
            await self.producer.send(
                name, encode(d), key=d.ticket_id.encode(), headers=make_headers(ticket_id=d.ticket_id)
            )
            for d in records
        ]
        await asyncio.gather(*sent)

    async def on_give_up(self, item: OutboxItem, reason: str) -> None:
        """The dead-letter record of a notification given up: what it was and why (without its action links,
        which act on the ticket; the outbox keeps the whole message for a redrive)."""
        message = {k: v for k, v in item.payload.items() if k in ("kind", "subject", "text")}
        value = {
            "notification_id": item.notification_id,
            "ticket_id": item.ticket_id,
            "channel": item.channel,
            "target": item.target,
            "message": message,
        }
        dead = dead_letter(
            service=SERVICE,
            topic=item.source_topic,
            partition=item.source_partition,
            offset=-1,
            key=item.ticket_id.encode(),
            value=orjson.dumps(value),
            reason=reason,
        )
        headers = make_headers(ticket_id=item.ticket_id)
        if self.deps.stream is not None:
            self.deps.stream.dead_lettered("delivery_given_up")
        log.warning("notification_given_up", notification_id=item.notification_id, channel=item.channel, reason=reason)
        try:
            await self.publish(self.deps.topics.deadletter.name, item.source_topic, encode(dead), headers)
        except KafkaError as exc:  # the outbox keeps it as failed (ticketloop deliveries failed, redrive): not lost
            log.error("deadletter_publish_failed", notification_id=item.notification_id, error=type(exc).__name__)  # noqa: TRY400

    # --- one batch of events ----------------------------------------------------------------------------------

    async def handle(self, records: list[Record]) -> None:
        """Decode, mute, plan and put a batch's notifications in the outbox, then hand them to the lanes. Returns
        once the outbox holds them: only then may the records' offsets be committed. The SQL part (silences,
        planning, outbox) is one trip to a worker thread for the whole batch."""
        decoded: list[tuple[Record, Ticket | None, list[Notice]]] = []
        for record in records:
            bind_ids(**ids_from_headers(record.headers))
            try:
                ticket, found = await self.notices(record)
            except DecodeError as exc:
                await self.to_deadletter(record, str(exc))
                continue
            if found:
                decoded.append((record, ticket, found))
        if not decoded:
            return
        replay_until = dict(self.replay_until)
        # it writes only records read again and digests (into the outbox): else it only reads, and goes on while
        # a checkpoint holds the writes
        writes = any(ticket is None or replayed(record, replay_until) for record, ticket, _ in decoded)
        call = self.sql if writes else self.sql_read
        planned = await call(self.prepare, decoded, datetime.now(UTC), replay_until)
        if planned.muted:  # the delivery log's records, counted, logged and published as the lanes' are
            self.dispatcher.writer.finish([], planned.muted)
        self.dispatcher.submit(planned.saved)
        self.dispatcher.submit(planned.new, saved=False)

    def prepare(
        self,
        engine: Engine,
        decoded: list[tuple[Record, Ticket | None, list[Notice]]],
        now: datetime,
        replay_until: Mapping[Partition, int],
    ) -> Planned:
        """(Through ``sql``.) The batch's muting state and its notifications planned; those of records read again
        written to the outbox, less what it or the delivery log already has."""
        mute = self.mute_state(engine, [ticket for _, ticket, _ in decoded if ticket is not None], now)
        new: list[OutboxItem] = []
        again: list[OutboxItem] = []
        muted: list[Delivery] = []
        for record, ticket, found in decoded:
            why = mute_for(ticket, now, mute) if ticket is not None else None  # a digest is not muted
            if why is not None:
                muted.extend(suppressed(notice, why, now) for notice in found)
                log.info("notification_muted", cause=why.cause, reason=why.reason, notices=len(found))
                continue
            planned = self.plan_event(record, ticket, found, now)
            # a digest may come again (a restarted or second router): checked like a record read again
            checked = ticket is None or replayed(record, replay_until)
            (again if checked else new).extend(planned)
        saved = outbox.add(engine, again) if again else []
        if len(saved) < len(again):
            log.info("already_planned", notifications=len(again) - len(saved))
        return Planned(new, saved, muted)

    async def sql(self, fn: Callable[Concatenate[Engine, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
        """A read or write of the batch (``fn(engine, ...)``, in place on SQLite, else in a worker thread), retried
        until the database answers: the batch's offsets are not committed before it is done, so nothing accepted
        is dropped while the database is down."""
        return await self._retried(lambda: self.runner(fn, *args, **kwargs))

    async def sql_read(self, fn: Callable[Concatenate[Engine, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
        """As ``sql``, for ``fn`` that only reads: it does not wait while a checkpoint holds writes
        (``SqlRunner.read``)."""
        return await self._retried(lambda: self.runner.read(fn, *args, **kwargs))

    @staticmethod
    async def _retried(call: Callable[[], Awaitable[R]]) -> R:
        while True:
            try:
                return await call()
            except SQLAlchemyError as exc:
                log.error("notifier_sql_failed", error=type(exc).__name__)  # noqa: TRY400 - the class names the fault
                await asyncio.sleep(1.0)

    async def to_deadletter(self, record: Record, reason: str) -> None:
        r = record
        dead = dead_letter_of(SERVICE, r.topic, r.partition, r.offset, r.key, r.value, reason)
        await self.publish(self.deps.topics.deadletter.name, record.topic, encode(dead), [])
        if self.deps.stream is not None:
            self.deps.stream.dead_lettered("undecodable")

    async def notices(self, record: Record) -> tuple[Ticket | None, list[Notice]]:
        """What one record tells people: a ticket's event or escalation (with the ticket), or a handover digest
        (no ticket)."""
        deps = self.deps
        if record.topic == deps.topics.handovers.name:
            digest = decode(HandoverDigest, record.value or b"")
            bind_ids(trace_id=digest.digest_id)
            return None, [notice_for_handover(digest, deps.public_url)]
        if record.topic == deps.topics.escalations.name:
            esc = decode(Escalation, record.value or b"")
            bind_ids(trace_id=esc.trace_id, ticket_id=esc.ticket_id)
            if not notifies(esc):
                return esc.ticket, []
            # addressed also to whoever is on call for the target team now
            now = datetime.now(UTC)
            team = esc.target_team
            overrides = await self.sql_read(db.list_overrides, team=team, since=now)
            found = on_call(esc.target_team, deps.teams.current, overrides, now)
            return esc.ticket, [notice_for_escalation(esc, deps.public_url, found, deps.teams.current)]
        ev = decode(TicketEvent, record.value or b"")
        bind_ids(trace_id=ev.trace_id, ticket_id=ev.ticket.ticket_id)
        return ev.ticket, notices_for_ticket_event(ev, deps.public_url, deps.surveys, deps.solved)

    def mute_state(self, engine: Engine, tickets: list[Ticket], now: datetime) -> MuteState:
        """Silences from SQL, once for a batch; firing tickets only when an inhibition rule could make one of
        these tickets its target."""
        config = self.deps.muting.current
        could_be_inhibited = any(rule.is_target(ticket_labels(t)) for t in tickets for rule in config.inhibit_rules)
        firing = db.firing_tickets(engine) if could_be_inhibited else []
        return MuteState(db.list_silences(engine, since=now), firing, config)

    def plan_event(self, record: Record, ticket: Ticket | None, found: list[Notice], now: datetime) -> list[OutboxItem]:
        """One event's notifications as outbox rows, with their action links and mentions."""
        deps = self.deps
        dispatches: list[Dispatch] = []
        team_of: dict[str, str] = {}
        teams = deps.teams.current
        state = ticket.state.value if ticket is not None else ""  # a digest has no ticket to act on: no links
        for notice in (with_mention(with_actions(n, deps.links, state, teams), teams) for n in found):
            planned = [
                part
                for d in plan_notice(notice, deps.config, teams.email_of(notice.person))
                for part in in_channel_parts(d, self.max_bytes)
            ]
            if not planned:
                log.warning("no_channels", team=notice.team, kind=notice.message.kind)
            dispatches.extend(planned)
            team_of.update({d.notification_id: notice.team for d in planned})
        return outbox_items(dispatches, team_of, (record.topic, record.partition), record.offset, now, self.seq)
