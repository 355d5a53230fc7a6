"""The notifier's faust agent: a thin shell around services.notifier.pipeline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from services.notifier.channels.base import Channel
from services.notifier.config import NotifyConfig
from services.notifier.pipeline import (
    Notice,
    RetryPolicy,
    deliver,
    notice_for_escalation,
    notices_for_ticket_event,
    notifies,
    plan_notice,
    suppressed,
)
from shared import db
from shared.codec import DecodeError, decode, encode
from shared.config import ConfigWatcher, poll_watchers
from shared.events import Delivery, Escalation, Ticket, TicketEvent
from shared.logging import bind_ids, get_logger, ids_from_headers, make_headers
from shared.metrics import counter
from shared.muting import MuteState, MutingConfig, mute_for
from shared.oncall import TeamsConfig, on_call
from shared.silences import ticket_labels
from shared.streams import emit, raw_topic, to_deadletter
from shared.topics import Topics

log = get_logger(__name__)
SERVICE = "notifier"


@dataclass
class NotifierDeps:
    topics: Topics
    config: NotifyConfig
    channels: Mapping[str, Channel]
    engine: Engine
    registry: CollectorRegistry
    retry: RetryPolicy
    public_url: str
    muting: ConfigWatcher[MutingConfig]
    teams: ConfigWatcher[TeamsConfig]


def register(app: faust.App, deps: NotifierDeps) -> None:
    t = deps.topics
    inputs = raw_topic(app, t.tickets.name, t.escalations.name)
    deliveries = raw_topic(app, t.deliveries.name)
    deadletter = raw_topic(app, t.deadletter.name)
    outcomes = counter(
        deps.registry, "ticketloop_notifier_deliveries_total", "Notification outcomes", ["channel", "kind", "status"]
    )

    reloads = counter(deps.registry, "ticketloop_notifier_config_reloads_total", "Config file changes seen", ["result"])

    @app.timer(interval=2.0, name="notifier-reload-config")
    async def reload_config() -> None:
        await poll_watchers((deps.muting, deps.teams), reloads)

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

    def mute_state(ticket: Ticket, now: datetime) -> MuteState:
        """Silences from SQL; firing tickets only when an inhibition rule could make this ticket its target."""
        config = deps.muting.current
        labels = ticket_labels(ticket)
        could_be_inhibited = any(rule.is_target(labels) for rule in config.inhibit_rules)
        firing = db.firing_tickets(deps.engine) if could_be_inhibited else []
        return MuteState(db.list_silences(deps.engine, since=now), firing, config)

    async def record(delivery: Delivery) -> None:
        await asyncio.to_thread(db.record_delivery, deps.engine, delivery)
        ticket_id = delivery.ticket_id
        await emit(deliveries, ticket_id, encode(delivery), make_headers(ticket_id=ticket_id))
        outcomes.labels(channel=delivery.channel, kind=delivery.kind, status=delivery.status).inc()

    @app.agent(inputs, name="notifier-dispatch")
    async def dispatch_agent(stream: Any) -> AsyncIterator[None]:
        async for event in stream.events():
            bind_ids(**ids_from_headers(event.headers))
            try:
                ticket, found = await notices(event)
            except DecodeError as exc:
                await to_deadletter(deadletter, SERVICE, event, str(exc))
                yield None
                continue
            if found:
                now = datetime.now(UTC)
                mute = mute_for(ticket, now, await asyncio.to_thread(mute_state, ticket, now))
                if mute is not None:
                    for notice in found:
                        await record(suppressed(notice, mute, now))
                    log.info("notification_muted", cause=mute.cause, reason=mute.reason, notices=len(found))
                    yield None
                    continue
            dispatches = []
            for notice in found:
                planned = plan_notice(notice, deps.config, deps.teams.current.email_of(notice.person))
                if not planned:
                    log.warning("no_channels", team=notice.team, kind=notice.message.kind)
                dispatches.extend(planned)
            for d in dispatches:
                if await asyncio.to_thread(db.was_delivered, deps.engine, d.notification_id):
                    log.info("already_delivered", notification_id=d.notification_id)
                    continue
                outcome = await deliver(d, deps.channels, deps.retry)
                await record(outcome)
                if outcome.status == "failed":
                    await to_deadletter(deadletter, SERVICE, event, f"{d.channel} to {d.target}: {outcome.error}")
                log.info(
                    "delivery",
                    channel=d.channel,
                    target=d.target,
                    kind=d.message.kind,
                    status=outcome.status,
                    attempts=outcome.attempts,
                )
            yield None
