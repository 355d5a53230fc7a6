"""The notifier worker: thin shells around services.notifier.pipeline, stages and lanes.

Per batch of ticket and escalation events (shared/streaming/driver.py: consumed with aiokafka, no per-event stream
machinery): decode → mute → plan → dedup into the outbox (one SQL transaction for the batch) → hand to the target
lanes; only then are the batch's offsets committed. No send happens before that: a slow or dead endpoint holds
only its own lane. The outbox is keyed by notification id, so a batch read again after a crash adds nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from services.notifier.channels.base import Channel, Http
from services.notifier.channels.registry import REGISTRY
from services.notifier.config import NotifyConfig
from services.notifier.lanes import Dispatcher, LaneDeps
from services.notifier.pipeline import (
    Dispatch,
    LinkIssuer,
    Notice,
    notice_for_escalation,
    notices_for_ticket_event,
    notifies,
    plan_notice,
    suppressed,
    with_actions,
    with_mention,
)
from services.notifier.stages import BreakerPolicy, RetryPolicy, message_to_json
from shared.events import Delivery, Escalation, Ticket, TicketEvent
from shared.infra.config import ConfigWatcher, poll_watchers
from shared.infra.logging import bind_ids, get_logger, ids_from_headers, make_headers
from shared.infra.metrics import check_name, counter
from shared.rules.muting import MuteState, MutingConfig, mute_for
from shared.rules.oncall import TeamsConfig, on_call
from shared.rules.silences import ticket_labels
from shared.store import db, outbox
from shared.store.outbox import OutboxItem
from shared.streaming.codec import DecodeError, decode, encode
from shared.streaming.deadletters import dead_letter, dead_letter_of
from shared.streaming.driver import BatchDriver, DriverConfig, Partition, Record
from shared.streaming.runtime import every
from shared.streaming.topics import Topics

R = TypeVar("R")
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
    http: Http | None = None
    """The channels' HTTP client, closed when the worker stops."""


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
    topic: str,
    partition: int,
    now: datetime,
    seq: Iterator[int],
) -> list[OutboxItem]:
    """The outbox rows of an event's dispatches, numbered in planning order by ``seq``."""
    return [
        OutboxItem(
            notification_id=d.notification_id,
            seq=next(seq),
            ticket_id=d.ticket_id,
            team=team_of.get(d.notification_id, ""),
            channel=d.channel,
            target=d.target,
            kind=d.message.kind,
            payload=message_to_json(d.message),
            source_topic=topic,
            source_partition=partition,
            created_at=now,
            due_at=now,
        )
        for d in dispatches
    ]


class Notifier:
    """The notifier worker: a batched consumer of the tickets and escalations topics (shared/streaming/driver.py)
    that plans each batch's notifications into the outbox in one SQL transaction and hands them to the lanes."""

    def __init__(self, deps: NotifierDeps, driver: DriverConfig, bootstrap: str) -> None:
        self.deps = deps
        self.driver_config = driver
        self.bootstrap = bootstrap
        self._producer: AIOKafkaProducer | None = None  # made in run(): aiokafka needs the running loop
        self.assigned: set[Partition] = set()
        self.seq = itertools.count(time.time_ns() // 1000)
        registry = deps.registry
        self.outcomes = counter(
            registry, "ticketloop_notifier_deliveries_total", "Notification outcomes", ["channel", "kind", "status"]
        )
        self.digests = counter(
            registry, "ticketloop_notifier_digests_total", "Digests sent under a rate limit", ["channel"]
        )
        self.reloads = counter(
            registry, "ticketloop_notifier_config_reloads_total", "Config file changes seen", ["result"]
        )
        self.dispatcher = Dispatcher(
            LaneDeps(
                channels=deps.channels,
                limits={k: kind.limit for k, kind in REGISTRY.items()},
                max_bytes={**{k: kind.max_bytes for k, kind in REGISTRY.items()}, "email": EMAIL_MAX_BYTES},
                engine=deps.engine,
                retry=deps.retry,
                breaker=deps.breaker,
                on_records=self.on_records,
                on_give_up=self.on_give_up,
                on_digest=lambda kind, _n: self.digests.labels(channel=kind).inc(),
            )
        )
        registry.register(LaneGauges(self.dispatcher))

    # --- the shell around Kafka -----------------------------------------------------------------------------

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("the notifier is not running")
        return self._producer

    async def run(self, stop: asyncio.Event) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True)
        await self.producer.start()
        driver = BatchDriver(self.driver_config, self.handle, self.on_assigned, self.on_revoked)
        timer = asyncio.create_task(every(2.0, self.reload, stop, "notifier-reload-config"))
        try:
            await driver.run(stop)
        finally:
            timer.cancel()
            await asyncio.gather(timer, return_exceptions=True)
            await self.dispatcher.stop()
            await self.producer.stop()
            if self.deps.http is not None:
                await self.deps.http.close()

    async def publish(self, topic: str, key: str, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        await self.producer.send_and_wait(topic, value, key=key.encode(), headers=headers)

    async def on_assigned(self, partitions: set[Partition]) -> None:
        t = self.deps.topics
        mine = {tp for tp in partitions if tp[0] in (t.tickets.name, t.escalations.name)}
        self.dispatcher.revoke(self.assigned - mine)
        new = mine - self.assigned
        self.assigned = mine
        loaded = await self.dispatcher.assign(new)
        if loaded:
            log.info("outbox_loaded", notifications=loaded, partitions=len(new))

    async def on_revoked(self, partitions: set[Partition]) -> None:
        self.dispatcher.revoke(partitions)
        self.assigned -= partitions

    async def reload(self) -> None:
        await poll_watchers((self.deps.muting, self.deps.teams), self.reloads)
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
        await self.publish(self.deps.topics.deadletter.name, item.source_topic, encode(dead), headers)
        log.warning("notification_given_up", notification_id=item.notification_id, channel=item.channel, reason=reason)

    # --- one batch of events ----------------------------------------------------------------------------------

    async def handle(self, records: list[Record]) -> None:
        """Decode, mute, plan and put a batch's notifications in the outbox, then hand them to the lanes. Returns
        once the outbox holds them: only then may the records' offsets be committed. The SQL part (silences,
        planning, outbox) is one trip to a worker thread for the whole batch."""
        decoded: list[tuple[Record, Ticket, list[Notice]]] = []
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
        fresh, muted = await self.sql(self.prepare, decoded, datetime.now(UTC))
        if muted:
            await self.on_records(muted)  # counted, logged and published as the lanes' records are
        self.dispatcher.submit(fresh)

    def prepare(
        self, decoded: list[tuple[Record, Ticket, list[Notice]]], now: datetime
    ) -> tuple[list[OutboxItem], list[Delivery]]:
        """(In a worker thread.) The batch's muting state, its notifications planned, the new ones written to the
        outbox and the muted ones to the delivery log: (outbox items written, suppressed records)."""
        mute = self.mute_state([ticket for _, ticket, _ in decoded], now)
        items: list[OutboxItem] = []
        muted: list[Delivery] = []
        for record, ticket, found in decoded:
            why = mute_for(ticket, now, mute)
            if why is not None:
                muted.extend(suppressed(notice, why, now) for notice in found)
                log.info("notification_muted", cause=why.cause, reason=why.reason, notices=len(found))
                continue
            items.extend(self.plan_event(record, ticket, found, now))
        if muted:
            outbox.finish(self.deps.engine, [], muted)  # the delivery log's bulk upsert, as for sent ones
        fresh = outbox.add(self.deps.engine, items)
        if len(fresh) < len(items):
            log.info("already_planned", notifications=len(items) - len(fresh))
        return fresh, muted

    async def sql(self, fn: Callable[..., R], *args: Any) -> R:
        """A read or write of the batch, retried until the database answers: the batch's offsets are not
        committed before it is done, so nothing accepted is dropped while the database is down."""
        while True:
            try:
                return await asyncio.to_thread(fn, *args)
            except SQLAlchemyError as exc:
                log.error("notifier_sql_failed", error=type(exc).__name__)  # noqa: TRY400 - the class names the fault
                await asyncio.sleep(1.0)

    async def to_deadletter(self, record: Record, reason: str) -> None:
        r = record
        dead = dead_letter_of(SERVICE, r.topic, r.partition, r.offset, r.key, r.value, reason)
        await self.publish(self.deps.topics.deadletter.name, record.topic, encode(dead), [])

    async def notices(self, record: Record) -> tuple[Ticket, list[Notice]]:
        deps = self.deps
        if record.topic == deps.topics.escalations.name:
            esc = decode(Escalation, record.value or b"")
            bind_ids(trace_id=esc.trace_id, ticket_id=esc.ticket_id)
            if not notifies(esc):
                return esc.ticket, []
            # addressed also to whoever is on call for the target team now
            now = datetime.now(UTC)
            team = esc.target_team
            overrides = await self.sql(lambda: db.list_overrides(deps.engine, team=team, since=now))
            found = on_call(esc.target_team, deps.teams.current, overrides, now)
            return esc.ticket, [notice_for_escalation(esc, deps.public_url, found, deps.teams.current)]
        ev = decode(TicketEvent, record.value or b"")
        bind_ids(trace_id=ev.trace_id, ticket_id=ev.ticket.ticket_id)
        return ev.ticket, notices_for_ticket_event(ev, deps.public_url)

    def mute_state(self, tickets: list[Ticket], now: datetime) -> MuteState:
        """Silences from SQL, once for a batch; firing tickets only when an inhibition rule could make one of
        these tickets its target."""
        config = self.deps.muting.current
        engine = self.deps.engine
        could_be_inhibited = any(rule.is_target(ticket_labels(t)) for t in tickets for rule in config.inhibit_rules)
        firing = db.firing_tickets(engine) if could_be_inhibited else []
        return MuteState(db.list_silences(engine, since=now), firing, config)

    def plan_event(self, record: Record, ticket: Ticket, found: list[Notice], now: datetime) -> list[OutboxItem]:
        """One event's notifications as outbox rows, with their action links and mentions."""
        deps = self.deps
        dispatches: list[Dispatch] = []
        team_of: dict[str, str] = {}
        teams = deps.teams.current
        for notice in (with_mention(with_actions(n, deps.links, ticket.state.value), teams) for n in found):
            planned = plan_notice(notice, deps.config, teams.email_of(notice.person))
            if not planned:
                log.warning("no_channels", team=notice.team, kind=notice.message.kind)
            dispatches.extend(planned)
            team_of.update({d.notification_id: notice.team for d in planned})
        return outbox_items(dispatches, team_of, record.topic, record.partition, now, self.seq)
