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
    muted,
    notice_for_escalation,
    notices_for_ticket_event,
    plan_notice,
)
from shared import db
from shared.codec import DecodeError, decode, encode
from shared.events import Escalation, TicketEvent
from shared.logging import bind_ids, get_logger, ids_from_headers, make_headers
from shared.metrics import counter
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


def register(app: faust.App, deps: NotifierDeps) -> None:
    t = deps.topics
    inputs = raw_topic(app, t.tickets.name, t.escalations.name)
    deliveries = raw_topic(app, t.deliveries.name)
    deadletter = raw_topic(app, t.deadletter.name)
    outcomes = counter(
        deps.registry, "ticketloop_notifier_deliveries_total", "Notification outcomes", ["channel", "kind", "status"]
    )

    def notices(event: Any) -> list[Notice]:
        if event.message.topic == t.escalations.name:
            esc = decode(Escalation, event.value)
            bind_ids(trace_id=esc.trace_id, ticket_id=esc.ticket_id)
            return [] if muted(esc.ticket, datetime.now(UTC)) else [notice_for_escalation(esc, deps.public_url)]
        ev = decode(TicketEvent, event.value)
        bind_ids(trace_id=ev.trace_id, ticket_id=ev.ticket.ticket_id)
        return notices_for_ticket_event(ev, deps.public_url)

    @app.agent(inputs, name="notifier-dispatch")
    async def dispatch_agent(stream: Any) -> AsyncIterator[None]:
        async for event in stream.events():
            bind_ids(**ids_from_headers(event.headers))
            try:
                found = notices(event)
            except DecodeError as exc:
                await to_deadletter(deadletter, SERVICE, event, str(exc))
                yield None
                continue
            dispatches = []
            for notice in found:
                planned = plan_notice(notice, deps.config)
                if not planned:
                    log.warning("no_channels", team=notice.team, kind=notice.message.kind)
                dispatches.extend(planned)
            for d in dispatches:
                ticket_id, message = d.ticket_id, d.message
                if await asyncio.to_thread(db.was_delivered, deps.engine, d.notification_id):
                    log.info("already_delivered", notification_id=d.notification_id)
                    continue
                record = await deliver(d, deps.channels, deps.retry)
                await asyncio.to_thread(db.record_delivery, deps.engine, record)
                await emit(deliveries, ticket_id, encode(record), make_headers(ticket_id=ticket_id))
                outcomes.labels(channel=d.channel, kind=message.kind, status=record.status).inc()
                if record.status == "failed":
                    await to_deadletter(deadletter, SERVICE, event, f"{d.channel} to {d.target}: {record.error}")
                log.info(
                    "delivery",
                    channel=d.channel,
                    target=d.target,
                    kind=message.kind,
                    status=record.status,
                    attempts=record.attempts,
                )
            yield None
