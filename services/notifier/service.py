"""The notifier's faust agent and timers: thin shells around services.notifier.pipeline, stages and lanes.

Per ticket or escalation event: decode → mute → plan → dedup into the outbox (one SQL transaction) → hand to
the target lanes. The event is done once its notifications are in the outbox; no send happens inside the
event's transaction, so a slow or dead endpoint holds only its own lane.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from services.notifier.channels.base import Channel
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
from shared import db, outbox
from shared.app import dead_letter
from shared.codec import DecodeError, decode, encode
from shared.config import ConfigWatcher, poll_watchers
from shared.events import Delivery, Escalation, Ticket, TicketEvent
from shared.logging import bind_ids, get_logger, ids_from_headers, make_headers
from shared.metrics import check_name, counter
from shared.muting import MuteState, MutingConfig, mute_for
from shared.oncall import TeamsConfig, on_call
from shared.outbox import OutboxItem
from shared.silences import ticket_labels
from shared.streams import emit, raw_topic, send_acked, to_deadletter
from shared.topics import Topics

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


def register(app: faust.App, deps: NotifierDeps) -> Dispatcher:
    t = deps.topics
    inputs = raw_topic(app, t.tickets.name, t.escalations.name)
    deliveries = raw_topic(app, t.deliveries.name)
    deadletter = raw_topic(app, t.deadletter.name)
    outcomes = counter(
        deps.registry, "ticketloop_notifier_deliveries_total", "Notification outcomes", ["channel", "kind", "status"]
    )
    digests = counter(
        deps.registry, "ticketloop_notifier_digests_total", "Digests sent under a rate limit", ["channel"]
    )
    reloads = counter(deps.registry, "ticketloop_notifier_config_reloads_total", "Config file changes seen", ["result"])
    seq = itertools.count(time.time_ns() // 1000)

    async def on_records(records: Sequence[Delivery]) -> None:
        for delivery in records:
            outcomes.labels(channel=delivery.channel, kind=delivery.kind, status=delivery.status).inc()
            log.info(
                "delivery",
                channel=delivery.channel,
                target=delivery.recipient,
                kind=delivery.kind,
                status=delivery.status,
                attempts=delivery.attempts,
                ticket_id=delivery.ticket_id,
            )
        await asyncio.gather(
            *(send_acked(deliveries, d.ticket_id, encode(d), make_headers(ticket_id=d.ticket_id)) for d in records)
        )

    async def on_give_up(item: OutboxItem, reason: str) -> None:
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
        await send_acked(deadletter, item.source_topic, encode(dead), make_headers(ticket_id=item.ticket_id))
        log.warning("notification_given_up", notification_id=item.notification_id, channel=item.channel, reason=reason)

    dispatcher = Dispatcher(
        LaneDeps(
            channels=deps.channels,
            limits={k: kind.limit for k, kind in REGISTRY.items()},
            max_bytes={**{k: kind.max_bytes for k, kind in REGISTRY.items()}, "email": EMAIL_MAX_BYTES},
            engine=deps.engine,
            retry=deps.retry,
            breaker=deps.breaker,
            on_records=on_records,
            on_give_up=on_give_up,
            on_digest=lambda kind, _n: digests.labels(channel=kind).inc(),
        )
    )
    deps.registry.register(LaneGauges(dispatcher))
    assigned: set[tuple[str, int]] = set()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # mode types the handler by a string name
    async def on_assigned(_app: Any, *args: Any, **_: Any) -> None:
        mine = {(tp.topic, tp.partition) for tp in args[0] if tp.topic in (t.tickets.name, t.escalations.name)}
        dispatcher.revoke(assigned - mine)
        new = mine - assigned
        assigned.clear()
        assigned.update(mine)
        loaded = await dispatcher.assign(new)
        if loaded:
            log.info("outbox_loaded", notifications=loaded, partitions=len(new))

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(_app: Any, *args: Any, **_: Any) -> None:
        gone = {(tp.topic, tp.partition) for tp in args[0]}
        dispatcher.revoke(gone)
        assigned.difference_update(gone)

    @app.timer(interval=2.0, name="notifier-reload-config")
    async def reload_config() -> None:
        await poll_watchers((deps.muting, deps.teams), reloads)
        redriven = await dispatcher.redrive(assigned)
        if redriven:
            log.info("outbox_redriven", notifications=redriven)

    async def notices(event: Any) -> tuple[Ticket, list[Notice]]:
        if event.message.topic == t.escalations.name:
            esc = decode(Escalation, event.value)
            bind_ids(trace_id=esc.trace_id, ticket_id=esc.ticket_id)
            if not notifies(esc):
                return esc.ticket, []
            # addressed also to whoever is on call for the target team now
            now = datetime.now(UTC)
            overrides = await asyncio.to_thread(db.list_overrides, deps.engine, team=esc.target_team, since=now)
            found = on_call(esc.target_team, deps.teams.current, overrides, now)
            return esc.ticket, [notice_for_escalation(esc, deps.public_url, found, deps.teams.current)]
        ev = decode(TicketEvent, event.value)
        bind_ids(trace_id=ev.trace_id, ticket_id=ev.ticket.ticket_id)
        return ev.ticket, notices_for_ticket_event(ev, deps.public_url)

    def mute_state(tickets: list[Ticket], now: datetime) -> MuteState:
        """Silences from SQL, once for a batch; firing tickets only when an inhibition rule could make one of
        these tickets its target."""
        config = deps.muting.current
        could_be_inhibited = any(rule.is_target(ticket_labels(t)) for t in tickets for rule in config.inhibit_rules)
        firing = db.firing_tickets(deps.engine) if could_be_inhibited else []
        return MuteState(db.list_silences(deps.engine, since=now), firing, config)

    async def record_suppressed(delivery: Delivery) -> None:
        await asyncio.to_thread(db.record_delivery, deps.engine, delivery)
        await emit(deliveries, delivery.ticket_id, encode(delivery), make_headers(ticket_id=delivery.ticket_id))
        outcomes.labels(channel=delivery.channel, kind=delivery.kind, status=delivery.status).inc()

    async def plan_event(
        event: Any, ticket: Ticket, found: list[Notice], mute: MuteState, now: datetime
    ) -> list[OutboxItem]:
        """One event's notifications as outbox rows (none when muted: those are recorded as suppressed)."""
        muted = mute_for(ticket, now, mute) if found else None
        if muted is not None:
            for notice in found:
                await record_suppressed(suppressed(notice, muted, now))
            log.info("notification_muted", cause=muted.cause, reason=muted.reason, notices=len(found))
            return []
        dispatches: list[Dispatch] = []
        team_of: dict[str, str] = {}
        teams = deps.teams.current
        for notice in (with_mention(with_actions(n, deps.links, ticket.state.value), teams) for n in found):
            planned = plan_notice(notice, deps.config, teams.email_of(notice.person))
            if not planned:
                log.warning("no_channels", team=notice.team, kind=notice.message.kind)
            dispatches.extend(planned)
            team_of.update({d.notification_id: notice.team for d in planned})
        return outbox_items(dispatches, team_of, event.message.topic, event.message.partition, now, seq)

    @app.agent(inputs, name="notifier-dispatch")
    async def dispatch_agent(stream: Any) -> AsyncIterator[None]:
        # in batches, as the router's projection: one SQL transaction puts a batch's notifications in the outbox
        async for batch in stream.take_events(500, within=0.005):
            decoded: list[tuple[Any, Ticket, list[Notice]]] = []
            for event in batch:
                bind_ids(**ids_from_headers(event.headers))
                try:
                    ticket, found = await notices(event)
                except DecodeError as exc:
                    await to_deadletter(deadletter, SERVICE, event, str(exc))
                    continue
                decoded.append((event, ticket, found))
            now = datetime.now(UTC)
            with_notices = [ticket for _, ticket, found in decoded if found]
            mute = await asyncio.to_thread(mute_state, with_notices, now) if with_notices else None
            items: list[OutboxItem] = []
            for event, ticket, found in decoded:
                if found and mute is not None:
                    items.extend(await plan_event(event, ticket, found, mute, now))
            if items:
                fresh = await asyncio.to_thread(outbox.add, deps.engine, items)
                if len(fresh) < len(items):
                    log.info("already_planned", notifications=len(items) - len(fresh))
                dispatcher.submit(fresh)
            yield None

    return dispatcher
