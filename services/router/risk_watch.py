"""The router's risk watch (the shell around shared/rules/risk.py): every ``risk_every_s`` it reads each project's
ticket openings and SLA breaches of its baseline period from the read model, judges the last hour against the
project's own baseline, and sends the warnings (and their resolutions) to the ``events`` topic as alerts, which
the router then routes like any other (operations, by the demo's tree). Their ids are one per project, measure,
state and minute, so two routers judging in the same minute send one event; a later round's is another occurrence
of the same open warning (one dedup key per project and measure)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from services.router.projects import ProjectsConfig
from services.router.sender import Send
from shared.events import InboundEvent
from shared.infra.config import ConfigWatcher
from shared.infra.logging import get_logger, make_headers
from shared.infra.metrics import counter
from shared.rules.risk import SOURCE, Measure, risk_events
from shared.store import db

log = get_logger(__name__)


class RiskWatch:
    def __init__(
        self,
        projects: ConfigWatcher[ProjectsConfig],
        engine: Engine,
        topic: str,
        send: Send,
        registry: CollectorRegistry,
    ) -> None:
        self.projects, self.engine, self.topic, self.publish = projects, engine, topic, send
        self.sent = counter(
            registry,
            "ticketloop_router_risk_warnings_total",
            "Risk warnings sent (firing) and resolved, by measure",
            ["measure", "status"],
        )

    async def round(self) -> None:
        """One look at every project: what is at risk now, what is no longer."""
        settings = {p.name: p.risk for p in self.projects.current.projects if p.risk.enabled}
        warned = await asyncio.to_thread(db.open_warnings, self.engine, SOURCE)
        if not settings and not warned:
            return
        now = datetime.now(UTC)
        longest = max((s.baseline for s in settings.values()), default=timedelta(0)) + timedelta(hours=1)
        history = await asyncio.to_thread(db.risk_history, self.engine, now - longest, SOURCE)
        for ev in risk_events(history, warned, settings, now):
            await self.send(ev)

    async def send(self, ev: InboundEvent) -> None:
        headers = make_headers(trace_id=ev.trace_id, event_id=ev.event_id)
        await self.publish(self.topic, ev.dedup_key, ev, headers)
        measure: Measure = "tickets" if ev.labels.get("risk") == "tickets" else "breaches"
        self.sent.labels(measure=measure, status=ev.status.value).inc()
        log.info("risk_warning", project=ev.labels.get("project"), measure=measure, status=ev.status.value)
