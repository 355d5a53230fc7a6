"""The router's handover watch (the shell around services/router/handover.py): every few seconds it looks for
projects whose hypercare has ended and sends their digest to the ``handovers`` topic once the moves are in the read
model (while tickets of the project still wait to move, it sends each a timer tick: one opened before the project's
hypercare was shortened moves then, not at the end its own timer still has); and for projects whose handover
package in force is not yet named on an open ticket's timeline, it sends that ticket a note (a ``note`` command on
the ``commands`` topic).

It keeps in memory which digests are done; started again, it asks the delivery log (a digest the notifier has
delivered is not sent again) and otherwise sends it again, which the notifier sends once: a digest's notifications
are checked against its outbox and delivery log, as a record read again is. The notes are asked of the read model
each round: a ticket whose timeline names the version is not noted, and a note sent twice before the read model has
it is applied once (its command id is one per ticket and version)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from sqlalchemy import Engine

from services.router.handover import (
    Seen,
    digest_for,
    handover_reason_prefix,
    nudges,
    package_notes,
    projects_due,
)
from services.router.projects import ProjectsConfig
from shared.infra.config import ConfigWatcher
from shared.infra.logging import get_logger, make_headers
from shared.infra.metrics import counter
from shared.store import db
from shared.streaming.codec import encode
from shared.streaming.topics import Topics

log = get_logger(__name__)


class HandoverWatch:
    def __init__(
        self,
        projects: ConfigWatcher[ProjectsConfig],
        engine: Engine,
        topics: Topics,
        bootstrap: str,
        registry: CollectorRegistry,
    ) -> None:
        self.projects, self.engine, self.topics, self.bootstrap = projects, engine, topics, bootstrap
        self.done: set[str] = set()
        """Digests sent (or found delivered) by this process."""
        self.noted: dict[str, int] = {}
        """Per project, the package version every open ticket was seen to name (no need to ask again)."""
        self.digests = counter(
            registry, "ticketloop_router_handover_digests_total", "Hypercare handover digests sent to the notifier"
        )
        self.notes = counter(
            registry, "ticketloop_router_package_notes_total", "Notes of a new handover package sent to open tickets"
        )
        self.producer: AIOKafkaProducer | None = None

    async def round(self) -> None:
        """One look: the digests now due, then the package notes."""
        now = datetime.now(UTC)
        projects = self.projects.current.projects
        for project in projects_due(projects, now, self.done):
            prefix = handover_reason_prefix(project.name)
            rows = await asyncio.to_thread(db.handover_rows, self.engine, project.name, prefix, project.hypercare_ends)
            seen = [Seen(*row) for row in rows]
            for tick in nudges(project, seen, now):  # a ticket whose own timer still has a later end moves now
                await self.send(self.topics.commands.name, tick.ticket_id, tick)
            digest = digest_for(project, seen, now)
            if digest is None:
                continue  # tickets are still moving
            if await asyncio.to_thread(db.was_told, self.engine, digest.digest_id):
                self.done.add(digest.digest_id)
                log.info("handover_digest_delivered_before", project=project.name)
                continue
            await self.send(self.topics.handovers.name, digest.digest_id, digest)
            self.done.add(digest.digest_id)
            self.digests.inc()
            log.info(
                "handover_digest_sent",
                project=project.name,
                moved=len(digest.moved),
                not_moved=len(digest.not_moved),
            )
        for project in projects:
            version = project.package_version
            if version is None or self.noted.get(project.name) == version:
                continue
            mentions = await asyncio.to_thread(db.package_mentions, self.engine, project.name)
            notes = package_notes(project, mentions, now)
            for note in notes:
                await self.send(self.topics.commands.name, note.ticket_id, note)
            if notes:
                self.notes.inc(len(notes))
                log.info("package_notes_sent", project=project.name, version=version, tickets=len(notes))
            else:  # every open ticket names it: asked again only when the version changes
                self.noted[project.name] = version

    async def send(self, topic: str, key: str, value: BaseModel) -> None:
        if self.producer is None:
            self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True)
            await self.producer.start()
        await self.producer.send_and_wait(topic, encode(value), key=key.encode(), headers=make_headers(trace_id=key))

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None
