"""Reading a quarter out of the SQL read model for the review (SQLite or PostgreSQL): the tickets opened in it,
their timelines and the survey answers given in it. Reads in pages, with a progress callback for long ranges."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select

from services.review.figures import Answer, Entry, TicketFacts
from shared.store.db import SURVEYS, TICKETS, TIMELINE, as_utc

PAGE = 500


@dataclass(frozen=True, slots=True)
class Scope:
    customer: str | None = None
    project: str | None = None

    def describe(self) -> str:
        parts = [
            f"customer {self.customer}" if self.customer else "",
            f"project {self.project}" if self.project else "",
        ]
        return ", ".join(p for p in parts if p) or "all customers and projects"


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def load_quarter(
    engine: Engine,
    start: datetime,
    end: datetime,
    scope: Scope,
    progress: Callable[[int, int], None] = lambda _done, _total: None,
) -> tuple[list[TicketFacts], list[Entry], list[Answer]]:
    """The tickets opened in [start, end) in ``scope``, their timeline entries, and the answers given then;
    ``progress(done, total)`` after each page of tickets."""
    query = select(TICKETS).where(TICKETS.c.opened_at >= start, TICKETS.c.opened_at < end)
    answers_q = select(SURVEYS).where(SURVEYS.c.answered_at >= start, SURVEYS.c.answered_at < end)
    if scope.customer is not None:
        query = query.where(TICKETS.c.customer == scope.customer)
        answers_q = answers_q.where(SURVEYS.c.customer == scope.customer)
    if scope.project is not None:
        query = query.where(TICKETS.c.project == scope.project)
        answers_q = answers_q.where(SURVEYS.c.project == scope.project)
    entries: list[Entry] = []
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(TICKETS.c.opened_at, TICKETS.c.ticket_id)).mappings().all()
        tickets = [
            TicketFacts(
                ticket_id=r["ticket_id"],
                kind=r["kind"],
                summary=r["summary"],
                priority=r["priority"],
                team=r["team"],
                policy=r["policy"],
                opened_at=_utc(r["opened_at"]),
                state=r["state"],
                occurrences=r["occurrences"],
                project=r["project"],
                customer=r["customer"],
                phase=r["phase"],
                category=(r["labels"] or {}).get("category"),
                known_issue=r["known_issue"],
                acknowledged_at=as_utc(r["acknowledged_at"]),
                resolved_at=as_utc(r["resolved_at"]),
            )
            for r in rows
        ]
        ids = [t.ticket_id for t in tickets]
        for done in range(0, len(ids), PAGE):
            page = ids[done : done + PAGE]
            timeline = conn.execute(
                select(TIMELINE).where(TIMELINE.c.ticket_id.in_(page)).order_by(TIMELINE.c.at, TIMELINE.c.id)
            ).mappings()
            entries.extend(
                Entry(e["ticket_id"], e["change_id"], e["change"], e["actor"], e["reason"], _utc(e["at"]))
                for e in timeline
            )
            progress(min(done + PAGE, len(ids)), len(ids))
        answers = [
            Answer(a["ticket_id"], a["score"], a["comment"], a["team"], _utc(a["answered_at"]), a["project"])
            for a in conn.execute(answers_q.order_by(SURVEYS.c.answered_at)).mappings()
        ]
    return tickets, entries, answers
