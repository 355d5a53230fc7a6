"""The router's handover watch (the shell around services/router/handover.py): every few seconds it looks for
projects whose hypercare has ended and sends their digest to the ``handovers`` topic once the moves are in the read
model (while tickets of the project still wait to move, it sends each a timer tick: one opened before the project's
hypercare was shortened moves then, not at the end its own timer still has); and, every minute, for projects whose
handover package in force is not yet named on an open ticket's timeline, it sends that ticket a note (a ``note``
command on the ``commands`` topic).

It keeps in memory which digests are done; started again, it asks the delivery log (a digest the notifier has
delivered is not sent again) and otherwise sends it again, which the notifier sends once: a digest's notifications
are checked against its outbox and delivery log, as a record read again is. The notes are asked of the read model:
a ticket whose timeline names the version is not noted, a note is sent once per process (its command id is one per
ticket and version, so one sent again after a restart, before the read model had it, is applied once). One
project's failure (a database error, a broker refusing a record) is logged and does not stop the others."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from services.router.commands import handover_reason_prefix
from services.router.handover import (
    Seen,
    digest_for,
    digest_key,
    ended,
    nudges,
    package_notes,
    projects_due,
)
from services.router.projects import Project, ProjectsConfig
from services.router.sender import Send
from shared.infra.config import ConfigWatcher
from shared.infra.logging import get_logger
from shared.infra.metrics import counter
from shared.store import db
from shared.streaming.topics import Topics

log = get_logger(__name__)

NOTES_EVERY_S = 60.0
"""How often open tickets are checked for the package version in force (a reopened ticket is noted too)."""


class HandoverWatch:
    def __init__(
        self,
        projects: ConfigWatcher[ProjectsConfig],
        engine: Engine,
        topics: Topics,
        send: Send,
        registry: CollectorRegistry,
    ) -> None:
        self.projects, self.engine, self.topics, self.send = projects, engine, topics, send
        self.done: set[str] = set()
        """Digests sent (or found delivered) by this process."""
        self.waiting_since: dict[str, datetime] = {}
        """Per digest, when this process first saw tickets waiting to move (the grace counts from there)."""
        self.noted: set[str] = set()
        """The package notes this process has sent (by command id)."""
        self.notes_at = float("-inf")
        self.digests = counter(
            registry, "ticketloop_router_handover_digests_total", "Hypercare handover digests sent to the notifier"
        )
        self.notes = counter(
            registry, "ticketloop_router_package_notes_total", "Notes of a new handover package sent to open tickets"
        )

    async def round(self) -> None:
        """One look: the digests now due (and the ticks of tickets still waiting), then, every minute, the notes."""
        now = datetime.now(UTC)
        projects = self.projects.current.projects
        names = [p.name for p in ended(projects, now)]
        waiting_in = await asyncio.to_thread(db.waiting_projects, self.engine, names) if names else set()
        # a project whose tickets this process saw waiting stays due until its digest goes (an end long past)
        waiting_in |= {p.name for p in projects if digest_key(p.name, p.hypercare_ends) in self.waiting_since}
        for project in projects_due(projects, now, self.done, waiting_in):
            await self.guarded(self.digest, project, now)
        if time.monotonic() - self.notes_at >= NOTES_EVERY_S:
            self.notes_at = time.monotonic()
            for project in projects:
                if project.package_version is not None:
                    await self.guarded(self.note, project, now)

    @staticmethod
    async def guarded(job: Callable[[Project, datetime], Awaitable[None]], project: Project, now: datetime) -> None:
        """One project's work; its failure is logged and the next project's goes on."""
        try:
            await job(project, now)
        except Exception as exc:  # noqa: BLE001 - one project's database or broker trouble must not stop the rest
            log.error("handover_watch_failed", project=project.name, error=type(exc).__name__)  # noqa: TRY400

    async def digest(self, project: Project, now: datetime) -> None:
        key = digest_key(project.name, project.hypercare_ends)
        prefix = handover_reason_prefix(project.name)
        rows = await asyncio.to_thread(db.handover_rows, self.engine, project.name, prefix, project.hypercare_ends)
        seen = [Seen(*row) for row in rows]
        ticks = nudges(project, seen, now)  # a ticket whose own timer still has a later end moves now
        if ticks:
            self.waiting_since.setdefault(key, now)
        for tick in ticks:
            await self.send(self.topics.commands.name, tick.ticket_id, tick, None)
        digest = digest_for(project, seen, now, self.waiting_since.get(key))
        if digest is None:
            return  # tickets are still moving
        if await asyncio.to_thread(db.was_told, self.engine, digest.digest_id):
            self.done.add(digest.digest_id)
            log.info("handover_digest_delivered_before", project=project.name)
            return
        await self.send(self.topics.handovers.name, digest.digest_id, digest, None)
        self.done.add(digest.digest_id)
        self.waiting_since.pop(key, None)
        self.digests.inc()
        log.info(
            "handover_digest_sent",
            project=project.name,
            moved=len(digest.moved) + digest.moved_unlisted,
            not_moved=len(digest.not_moved) + digest.not_moved_unlisted,
        )

    async def note(self, project: Project, now: datetime) -> None:
        mentions = await asyncio.to_thread(db.package_mentions, self.engine, project.name)
        notes = [n for n in package_notes(project, mentions, now) if n.command_id not in self.noted]
        for note in notes:
            await self.send(self.topics.commands.name, note.ticket_id, note, None)
            self.noted.add(note.command_id)
        if notes:
            self.notes.inc(len(notes))
            log.info("package_notes_sent", project=project.name, version=project.package_version, tickets=len(notes))
