"""The hypercare handover digest and the package notes: pure decisions for the router's handover watch
(services/router/handover_watch.py).

When a project's hypercare ends, the router's timer moves each of its open tickets to operations, one by one on
the tickets' own partitions (services/router/commands.py ``hand_over``). Then both teams get one message that lists
what moved: the *digest*. It goes once the moves are in the read model (no open ticket of the project still in
hypercare), ``SETTLE`` after the end at the earliest; if some ticket still has not moved ``GRACE`` after the watch
first saw it waiting (a router partition down), it goes anyway and names those tickets as moving late. Its id is one
per project and end of hypercare (in UTC), so a digest sent again (a restart, a second router) is the same
notification, which the notifier sends once. It lists at most ``LISTED`` tickets of each kind and counts the rest,
so it always fits one Kafka record and one chat message.

A ticket that opened before its project's hypercare was shortened still has the old end on its own timer: while it
waits, the watch sends it a timer tick (``nudges``), whenever the project's end was, and the router moves it.

When a new version of a project's handover package comes into force, each open ticket of the project gets a note
on its timeline naming it (``package_notes``): one comment command per ticket whose timeline does not name that
version yet, with an id per ticket and version, so a note sent twice is applied once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.router.projects import Project
from shared.events import Action, Command, HandoverDigest, MovedTicket
from shared.infra.ids import stable_id

LISTED = 50
"""At most this many moved (and not moved) tickets are listed in a digest; the rest are counted."""
SUMMARY_CHARS = 200
"""A listed ticket's summary is cut to this many characters."""
SETTLE = timedelta(seconds=10)
"""How long after the end of hypercare the digest waits at the least: the moves' news reaches the read model."""
GRACE = timedelta(minutes=10)
"""How long the digest waits for tickets that have not moved yet (from when the watch first saw them waiting); after
it, it goes and names them."""
WINDOW = timedelta(days=7)
"""How far back a watch (started, or restarted) looks for a hypercare that ended without its digest sent."""
_ACTIVE = frozenset({"open", "acknowledged"})
ACTOR = "handover"
"""Who the package notes are from, on the timeline."""


def digest_key(project: str, ends: datetime) -> str:
    """The digest's id: one per project and end of hypercare (it is also the key of its notifications)."""
    return f"handover:{project}:{ends.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def ended(projects: Iterable[Project], now: datetime) -> list[Project]:
    """The projects whose hypercare ended at least ``SETTLE`` ago."""
    return [p for p in projects if now - p.hypercare_ends >= SETTLE]


def projects_due(
    projects: Iterable[Project], now: datetime, done: set[str], waiting_in: Set[str] = frozenset()
) -> list[Project]:
    """The projects to look at now: hypercare ended at least ``SETTLE`` ago, digest not done, and either ended at
    most ``WINDOW`` ago or with tickets still waiting to move (``waiting_in``: those projects' names; a hypercare
    shortened to an end long past)."""
    return [
        p
        for p in ended(projects, now)
        if digest_key(p.name, p.hypercare_ends) not in done
        and (now - p.hypercare_ends <= WINDOW or p.name in waiting_in)
    ]


@dataclass(frozen=True, slots=True)
class Seen:
    """A ticket of the project as the read model has it, with its handover entry's reason (None: not moved)."""

    ticket_id: str
    summary: str
    priority: str
    state: str
    phase: str | None
    handover: str | None


def moved_text(reason: str) -> str:
    """'from ian (implementation) to operations', out of a handover entry's reason."""
    _, sep, rest = reason.partition("; from ")
    return f"from {rest}" if sep else reason


def digest_for(
    project: Project, seen: Sequence[Seen], now: datetime, waiting_since: datetime | None = None
) -> HandoverDigest | None:
    """The project's digest, or None while open tickets still in hypercare may yet move: until ``GRACE`` after the
    end, or after ``waiting_since`` (when the watch first saw tickets waiting), whichever is later."""
    ends = project.hypercare_ends
    moved = [s for s in seen if s.handover is not None]
    late = waiting(seen)
    if late and now - max(ends, waiting_since or ends) < GRACE:
        return None

    def item(s: Seen) -> MovedTicket:
        return MovedTicket(
            ticket_id=s.ticket_id,
            summary=s.summary if len(s.summary) <= SUMMARY_CHARS else s.summary[: SUMMARY_CHARS - 1] + "…",
            priority=s.priority,
            state=s.state,
            moved=moved_text(s.handover) if s.handover else "",
        )

    return HandoverDigest(
        digest_id=digest_key(project.name, ends),
        project=project.name,
        customer=project.customer,
        ended_at=ends,
        operations=project.operations.team,
        implementation=project.implementation.team,
        moved=[item(s) for s in moved[:LISTED]],
        not_moved=[item(s) for s in late[:LISTED]],
        moved_unlisted=max(0, len(moved) - LISTED),
        not_moved_unlisted=max(0, len(late) - LISTED),
        package=f"{project.name} v{project.package_version}" if project.package_version else None,
        package_lacks=list(project.package_lacks),
        at=now,
    )


def waiting(seen: Sequence[Seen]) -> list[Seen]:
    """The project's tickets still open in an earlier phase with no handover entry: not moved yet."""
    return [s for s in seen if s.handover is None and s.state in _ACTIVE and s.phase != "operations"]


def nudges(project: Project, seen: Sequence[Seen], now: datetime) -> list[Command]:
    """A timer tick for each ticket not moved yet: a ticket opened before the project's hypercare was shortened
    still has the old end on its own timer, and the tick moves it now (services/router/steps.py ``command_step``
    compares the ticket's end with the project's as configured now). One id per ticket and end: a tick sent every
    round is applied once."""
    key = digest_key(project.name, project.hypercare_ends)
    return [
        Command(
            command_id=f"handover-tick:{s.ticket_id}:{key}",
            ticket_id=s.ticket_id,
            action=Action.tick,
            actor="router-timer",
            issued_at=now,
            trace_id=f"handover-{s.ticket_id}",
        )
        for s in waiting(seen)
    ]


_VERSION_NAMED = re.compile(r"handover package v(\d+)\b")


def names_version(reasons: Iterable[str], version: int) -> bool:
    """Whether a ticket's timeline names the package version (its routing reason or an earlier note)."""
    return any(int(m.group(1)) == version for r in reasons for m in _VERSION_NAMED.finditer(r))


def package_notes(project: Project, open_tickets: Mapping[str, Sequence[str]], now: datetime) -> list[Command]:
    """A note for each open ticket of the project whose timeline does not yet name the package in force
    (``open_tickets``: ticket id -> its timeline's reasons that name a package); none without a package."""
    version = project.package_version
    if version is None:
        return []
    lacks = f"; it still lacks {', '.join(project.package_lacks)}" if project.package_lacks else ""
    reason = f"handover package v{version} of project {project.name} is in force{lacks}"
    return [
        Command(
            command_id=stable_id("package-note", project.name, str(version), ticket_id),
            ticket_id=ticket_id,
            action=Action.note,
            actor=ACTOR,
            reason=reason[:4000],
            issued_at=now,
            trace_id=f"package-{project.name}-v{version}",
        )
        for ticket_id, reasons in sorted(open_tickets.items())
        if not names_version(reasons, version)
    ]
