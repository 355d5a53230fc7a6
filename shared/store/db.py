"""The SQL read model (sqlmodel): tickets, their timeline and the notifier's delivery log.

SQLite by default, PostgreSQL by ``DATABASE_URL``. Writers are idempotent: a ticket row only moves forward in
version, a timeline entry and a delivery record are unique by their stable ids, so at-least-once replays of
Kafka never duplicate anything.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    Column,
    Engine,
    Table,
    UniqueConstraint,
    bindparam,
    case,
    delete,
    event,
    func,
    insert,
    update,
)
from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DataError, DBAPIError, IntegrityError, SQLAlchemyError, StatementError
from sqlmodel import Field, Session, SQLModel, col, create_engine, select

from shared.events import Delivery, Escalation, Ticket, TicketEvent
from shared.rules.matchers import matcher_labels
from shared.rules.oncall import Override
from shared.rules.satisfaction import SATISFIED, comment_of
from shared.rules.silences import Silence
from shared.rules.workarounds import IssueTally, tally
from shared.store import schema
from shared.store.dbapi import fetch_all


class TicketRow(SQLModel, table=True):
    __tablename__ = "tickets"

    ticket_id: str = Field(primary_key=True)
    dedup_key: str = Field(index=True)
    kind: str
    source: str
    state: str = Field(index=True)
    summary: str
    severity: str
    priority: str
    team: str = Field(index=True)
    person: str | None = None
    project: str | None = Field(default=None, index=True)
    customer: str | None = Field(default=None, index=True)
    phase: str | None = None
    next_level: str | None = None
    known_issue: str | None = None
    muted_until: datetime | None = None
    watchers: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    channels: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    policy: str
    rule: str
    labels: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    occurrences: int
    alerts: int = 1
    alerts_firing: int = 1
    first_seen: datetime
    last_seen: datetime
    opened_at: datetime = Field(index=True)
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    snoozed_until: datetime | None = None
    waiting_on_customer: bool = False
    reopened: int = 0
    flapping: bool = False
    stable_at: datetime | None = None
    notify_at: datetime | None = None
    notified_alerts: int = 0
    notified_at: datetime | None = None
    version: int


class TimelineRow(SQLModel, table=True):
    __tablename__ = "ticket_timeline"
    __table_args__ = (UniqueConstraint("change_id"),)

    id: int | None = Field(default=None, primary_key=True)
    change_id: str
    ticket_id: str = Field(index=True)
    version: int
    change: str
    actor: str
    reason: str
    at: datetime
    via: str | None = None
    """The API client that acted for ``actor`` (None: the actor acted itself)."""


class DeliveryRow(SQLModel, table=True):
    __tablename__ = "deliveries"

    notification_id: str = Field(primary_key=True)
    ticket_id: str = Field(index=True)
    kind: str
    channel: str
    recipient: str
    status: str
    attempts: int
    error: str
    at: datetime


class SurveyAnswerRow(SQLModel, table=True):
    """A reporter's satisfaction survey answer, one per ticket (the newest: an answer may be changed)."""

    __tablename__ = "survey_answers"

    ticket_id: str = Field(primary_key=True)
    score: int
    comment: str
    rater: str
    answered_at: datetime = Field(index=True)
    resolved_at: datetime
    project: str | None = Field(default=None, index=True)
    customer: str | None = Field(default=None, index=True)
    team: str = Field(index=True)
    category: str | None = None
    phase: str | None = None
    priority: str
    version: int


class SilenceRow(SQLModel, table=True):
    __tablename__ = "silences"

    silence_id: str = Field(primary_key=True)
    matchers: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    starts_at: datetime
    ends_at: datetime = Field(index=True)
    created_by: str
    comment: str
    created_at: datetime


class OverrideRow(SQLModel, table=True):
    __tablename__ = "oncall_overrides"

    override_id: str = Field(primary_key=True)
    team: str = Field(index=True)
    person: str
    starts_at: datetime
    ends_at: datetime = Field(index=True)
    created_by: str
    reason: str
    created_at: datetime


class ActionLinkUseRow(SQLModel, table=True):
    """One use of a one-click action link. ``used_at`` is None while a request holds the claim (publishing)."""

    __tablename__ = "action_link_uses"

    link_id: str = Field(primary_key=True)
    ticket_id: str = Field(index=True)
    action: str
    person: str
    used_at: datetime | None = None
    claim: str
    claimed_at: datetime


class ChatMessageRow(SQLModel, table=True):
    """The last message a chat target that can change what it sent (a Slack bot) posted for a ticket: the one it
    redraws when the ticket changes, after a restart too."""

    __tablename__ = "chat_messages"

    target: str = Field(primary_key=True)
    ticket_id: str = Field(primary_key=True)
    ref: str
    """The vendor's id of the message (Slack: its ``ts``)."""
    posted_at: datetime = Field(index=True)


JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024


def make_engine(url: str, busy_timeout_ms: int = 30_000, wal_autocheckpoint: bool = True) -> Engine:
    """``busy_timeout_ms`` (SQLite): how long a statement waits for another connection's write lock;
    ``wal_autocheckpoint=False``: this engine's commits never checkpoint the WAL (someone else must)."""
    if url.startswith("sqlite"):
        connect_args = {"check_same_thread": False, "timeout": busy_timeout_ms / 1000}
        engine = create_engine(url, connect_args=connect_args, json_serializer=json_text)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cur.execute("PRAGMA synchronous=NORMAL")
            # when the log starts over, its file is cut back to this size (a burst's log does not keep its disk)
            cur.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
            if not wal_autocheckpoint:
                cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    # a server that takes the connection and never answers (a firewall, a half-dead host) would be waited on for
    # ever: a service would not start, ``ticketloop db`` would hang; the URL's own connect_timeout comes first
    given = make_url(url)
    timeout = given.get_backend_name() == "postgresql" and "connect_timeout" not in given.query
    connect_args = {"connect_timeout": PG_CONNECT_TIMEOUT_S} if timeout else {}
    return create_engine(given, pool_pre_ping=True, json_serializer=json_text, connect_args=connect_args)


PG_CONNECT_TIMEOUT_S = 10
"""How long connecting to PostgreSQL may take (libpq's ``connect_timeout``, whole seconds)."""


def missing_sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names, when there is none (None: another database, in memory, or the file is there).
    A command that only reads must not make an empty database where the operator mistyped the path."""
    try:
        given = make_url(url)
    except (ArgumentError, ValueError):
        return None
    name = given.database
    if given.get_backend_name() != "sqlite" or not name or name == ":memory:" or name.startswith("file:"):
        return None
    path = Path(name)
    return None if path.exists() else path


def database_problem(exc: BaseException, url: str) -> str:
    """What went wrong with the database at ``url``, fit for an operator: the driver's own first line (``password
    authentication failed``, ``no such table: tickets``), with the URL and its password taken out, never the
    statement; a URL SQLAlchemy cannot read is said to be one, without its text (which is the URL)."""
    if isinstance(exc, ImportError):
        return f"no driver here for this database URL ({type(exc).__name__})"
    if not isinstance(exc, DBAPIError):
        return f"not a database URL ({type(exc).__name__})"
    cause = exc.orig if exc.orig is not None else exc
    lines = str(cause).strip().splitlines()
    first = lines[0] if lines else ""
    first = first.replace(url, "<the database URL>")
    with contextlib.suppress(ArgumentError, ValueError):
        password = make_url(url).password
        if password:
            first = first.replace(str(password), "***")
    return f"{type(cause).__name__}: {first}"[:400]


def json_text(value: Any) -> str:
    """JSON columns are written with orjson (several times faster than the json module on the notifier's
    outbox payloads); the text is the same JSON either way, so rows read back alike."""
    return orjson.dumps(value).decode()


def init_db(engine: Engine) -> None:
    """Bring the schema to the newest revision (shared/store/schema.py): made when the database is empty, moved
    on when it is older. Services start together: one migrates, the others wait for it."""
    schema.upgrade(engine)


def as_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


LEAD = " (team lead)"


def escalation_entry(esc: Escalation) -> dict[str, Any]:
    """An escalation, warning or breach as a timeline row."""
    reason = (
        f"level {esc.level} to {esc.target_team}{LEAD if esc.to_lead else ''}: {esc.reason}"
        if esc.kind == "escalation"
        else esc.reason
        if esc.kind == "breach"
        else f"to {esc.target_team}: {esc.reason}"
    )
    return {
        "change_id": esc.escalation_id,
        "ticket_id": esc.ticket_id,
        "version": esc.ticket.version,
        "change": {"escalation": "escalated", "warning": "warned", "breach": "breached"}[esc.kind],
        "actor": "sla",
        "via": None,
        "reason": reason,
        "at": esc.fired_at,
    }


def change_entries(ev: TicketEvent) -> list[dict[str, Any]]:
    """A ticket change as timeline rows: the change, the similar resolved tickets and the suggested workaround
    when it carries them."""
    t = ev.ticket
    base = {"ticket_id": t.ticket_id, "version": t.version, "at": ev.at, "via": None}
    rows = [
        {
            **base,
            "change_id": ev.change_id,
            "change": ev.change.value,
            "actor": ev.actor,
            "via": ev.via,
            "reason": ev.reason,
        }
    ]
    if ev.similar:
        rows.append(
            {
                **base,
                "change_id": f"{ev.change_id}:similar",
                "change": "similar_tickets",
                "actor": "knowledge",
                "reason": "; ".join(ev.similar),
            }
        )
    if ev.workaround:
        rows.append(
            {
                **base,
                "change_id": f"{ev.change_id}:workaround",
                "change": "workaround_suggested",
                "actor": "known-issues",
                "reason": ev.workaround,
            }
        )
    return rows


def survey_rows(events: Iterable[TicketEvent]) -> list[dict[str, Any]]:
    """The survey answers among a batch's changes (``rated``), the newest per ticket, as survey_answers rows."""
    rows: dict[str, dict[str, Any]] = {}
    for ev in events:
        t = ev.ticket
        if ev.change.value != "rated" or t.rating is None or t.resolved_at is None:
            continue
        if t.ticket_id in rows and rows[t.ticket_id]["version"] >= t.version:
            continue
        rows[t.ticket_id] = {
            "ticket_id": t.ticket_id,
            "score": t.rating,
            "comment": comment_of(ev.reason, t.rating),
            "rater": ev.actor,
            "answered_at": t.rated_at or ev.at,
            "resolved_at": t.resolved_at,
            "project": t.project,
            "customer": t.customer,
            "team": t.team,
            "category": t.labels.get("category"),
            "phase": t.phase,
            "priority": t.priority,
            "version": t.version,
        }
    return list(rows.values())


def newest_per_ticket(events: Iterable[TicketEvent]) -> dict[str, Ticket]:
    """Of a batch's changes, each ticket's newest version (the only one its row needs)."""
    newest: dict[str, Ticket] = {}
    for ev in events:
        t = ev.ticket
        if t.ticket_id not in newest or newest[t.ticket_id].version < t.version:
            newest[t.ticket_id] = t
    return newest


def versions_applied(events: Iterable[TicketEvent], known: dict[str, int]) -> int:
    """How many of the changes, applied in order, move their ticket forward (``known``: each ticket's version in
    the read model): the count the projection reports, as if it wrote them one by one."""
    held = dict(known)
    applied = 0
    for ev in events:
        t = ev.ticket
        if t.ticket_id not in held or held[t.ticket_id] < t.version:
            held[t.ticket_id] = t.version
            applied += 1
    return applied


def is_transient(exc: SQLAlchemyError) -> bool:
    """Whether a database error may pass by itself, as opposed to the database refusing what was sent. Only
    what names the data is the data's fault: a value it cannot hold (DataError, or a parameter that did not even
    reach the driver), a constraint (IntegrityError). Anything else (the server away or busy, read-only after a
    failover, a missing table, a privilege) is retried: dropping records for it would empty the read model."""
    if isinstance(exc, DataError | IntegrityError):
        return False
    return not (isinstance(exc, StatementError) and not isinstance(exc, DBAPIError))


def project(engine: Engine, events: Iterable[TicketEvent], escalations: Iterable[Escalation] = ()) -> int:
    """Apply ticket events and escalations to the read model in one transaction (idempotent): each ticket's row
    written once per batch with its newest version (never over a newer one), the timeline appended in one
    statement (an entry already there is kept). Bulk statements, not the ORM row by row (issue 14: the ORM
    projection was a quarter of the router's time). Escalations appear on
    the timeline as ``escalated``, ``warned`` or ``breached`` entries. Returns how many changes moved a ticket
    forward."""
    events = list(events)
    newest = newest_per_ticket(events)
    entries = [escalation_entry(e) for e in escalations] + [row for ev in events for row in change_entries(ev)]
    applied = 0
    with engine.begin() as conn:
        if newest:
            known: dict[str, int] = dict(conn.execute(_VERSIONS, {"ids": list(newest)}).tuples().all())
            applied = versions_applied(events, known)
            changed = [t for tid, t in newest.items() if tid not in known or known[tid] < t.version]
            if changed:
                rows = [t.model_dump(exclude=NOT_IN_ROW) for t in changed]
                conn.execute(_newer_upsert(conn.dialect.name, TICKETS), rows)
        if entries:
            conn.execute(_timeline_insert(conn.dialect.name), list({e["change_id"]: e for e in entries}.values()))
        answers = survey_rows(events)
        if answers:
            conn.execute(_newer_upsert(conn.dialect.name, SURVEYS), answers)
    return applied


CHAT_MESSAGES: Table = ChatMessageRow.__table__  # type: ignore[attr-defined]


def put_chat_message(engine: Engine, target: str, ticket_id: str, ref: str, at: datetime) -> None:
    """Remember the last message a chat target posted for a ticket (one row per pair: a newer post replaces it)."""
    stmt = dialect_insert(engine.dialect.name)(CHAT_MESSAGES).values(
        target=target, ticket_id=ticket_id, ref=ref, posted_at=at
    )
    stmt = stmt.on_conflict_do_update(index_elements=["target", "ticket_id"], set_={"ref": ref, "posted_at": at})
    with engine.begin() as conn:
        conn.execute(stmt)


def chat_message_ref(engine: Engine, target: str, ticket_id: str) -> str | None:
    """The vendor's id of the last message the target posted for the ticket (None: none remembered)."""
    query = sa_select(CHAT_MESSAGES.c.ref).where(
        CHAT_MESSAGES.c.target == target, CHAT_MESSAGES.c.ticket_id == ticket_id
    )
    with engine.connect() as conn:
        found = conn.execute(query).scalar_one_or_none()
    return str(found) if found is not None else None


def forget_chat_message(engine: Engine, target: str, ticket_id: str) -> None:
    """The vendor no longer has the message: nothing to redraw for the pair any more."""
    with engine.begin() as conn:
        conn.execute(
            delete(CHAT_MESSAGES).where(CHAT_MESSAGES.c.target == target, CHAT_MESSAGES.c.ticket_id == ticket_id)
        )


TICKETS: Table = TicketRow.__table__  # type: ignore[attr-defined]  # sqlmodel does not type it
TIMELINE: Table = TimelineRow.__table__  # type: ignore[attr-defined]
DELIVERIES: Table = DeliveryRow.__table__  # type: ignore[attr-defined]
_VERSIONS = sa_select(TICKETS.c.ticket_id, TICKETS.c.version).where(
    TICKETS.c.ticket_id.in_(bindparam("ids", expanding=True))
)


def dialect_insert(dialect: str) -> Any:
    """The INSERT of this database's dialect (the one with ``on_conflict_do_*``): SQLite or PostgreSQL."""
    if dialect == "sqlite":
        return sqlite_insert
    if dialect == "postgresql":
        return pg_insert
    raise ValueError(f"unsupported database {dialect!r}")  # pragma: no cover - the two ticketloop supports


@functools.cache
def _newer_upsert(dialect: str, table: Table) -> Any:
    """A row keyed by ticket id, inserted or replaced — only by a newer version (two batches racing keep the
    newest): a ticket's row, a ticket's survey answer."""
    stmt = dialect_insert(dialect)(table)
    columns = [c.name for c in table.columns if c.name != "ticket_id"]
    return stmt.on_conflict_do_update(
        index_elements=["ticket_id"],
        set_={c: stmt.excluded[c] for c in columns},
        where=table.c.version < stmt.excluded.version,
    )


SURVEYS: Table = SurveyAnswerRow.__table__  # type: ignore[attr-defined]


SurveyBy = Literal["project", "customer", "team"]
_SATISFIED_COUNT = func.sum(case((SURVEYS.c.score >= SATISFIED, 1), else_=0))
"""How many of the answers counted are 4 or 5."""


def survey_figures(
    engine: Engine,
    by: SurveyBy,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    project: str | None = None,
    customer: str | None = None,
    team: str | None = None,
) -> list[tuple[str | None, int, int]]:
    """(project, customer or team; answers; satisfied, i.e. 4 or 5) of the survey answers given in [since,
    until), optionally of one project, customer or team: counted in SQL."""
    key = SURVEYS.c[by]
    query = sa_select(key, func.count(), _SATISFIED_COUNT).group_by(key).order_by(key)
    for column, value in (("project", project), ("customer", customer), ("team", team)):
        if value is not None:
            query = query.where(SURVEYS.c[column] == value)
    if since is not None:
        query = query.where(SURVEYS.c.answered_at >= since)
    if until is not None:
        query = query.where(SURVEYS.c.answered_at < until)
    with engine.connect() as conn:
        return [(k, int(n), int(s or 0)) for k, n, s in conn.execute(query).all()]


def survey_answers(
    engine: Engine, *, since: datetime | None = None, until: datetime | None = None, project: str | None = None
) -> list[SurveyAnswerRow]:
    """The answers given in [since, until), newest first (for the review's comments)."""
    with Session(engine) as session:
        query = select(SurveyAnswerRow)
        if project is not None:
            query = query.where(SurveyAnswerRow.project == project)
        if since is not None:
            query = query.where(SurveyAnswerRow.answered_at >= since)
        if until is not None:
            query = query.where(SurveyAnswerRow.answered_at < until)
        rows = session.exec(query.order_by(col(SurveyAnswerRow.answered_at).desc())).all()
        session.expunge_all()
        return list(rows)


def get_survey_answer(engine: Engine, ticket_id: str) -> SurveyAnswerRow | None:
    with Session(engine) as session:
        row = session.get(SurveyAnswerRow, ticket_id)
        session.expunge_all()
        return row


def survey_cells(engine: Engine, since: datetime) -> list[tuple[str | None, str | None, str, int, int]]:
    """(project, customer, team, answers, satisfied) of the answers given since ``since``: the metric's cells."""
    keys = (SURVEYS.c.project, SURVEYS.c.customer, SURVEYS.c.team)
    query = sa_select(*keys, func.count(), _SATISFIED_COUNT).where(SURVEYS.c.answered_at >= since).group_by(*keys)
    with engine.connect() as conn:
        return [(p, c, t, int(n), int(s or 0)) for p, c, t, n, s in conn.execute(query).all()]


def resolved_tickets(engine: Engine, limit: int = 2000) -> list[tuple[str, str, datetime, str, str | None]]:
    """The ``limit`` most recently resolved (or closed) tickets: (id, summary, resolved at, how and by whom it was
    resolved: the last resolve entry of its timeline, or the known issue it was answered with, customer)."""
    newest = (
        sa_select(
            TICKETS.c.ticket_id, TICKETS.c.summary, TICKETS.c.resolved_at, TICKETS.c.known_issue, TICKETS.c.customer
        )
        .where(TICKETS.c.state.in_(("resolved", "closed")), TICKETS.c.resolved_at.is_not(None))
        .order_by(TICKETS.c.resolved_at.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(newest).all()
        how: dict[str, str] = {}
        ids = [r[0] for r in rows]
        for start in range(0, len(ids), 500):
            entries = conn.execute(
                sa_select(TIMELINE.c.ticket_id, TIMELINE.c.actor, TIMELINE.c.reason)
                .where(TIMELINE.c.ticket_id.in_(ids[start : start + 500]), TIMELINE.c.change == "resolved")
                .order_by(TIMELINE.c.at, TIMELINE.c.id)
            ).all()
            how.update({tid: f"by {actor}: {reason}" for tid, actor, reason in entries})
    return [
        (tid, summary, as_utc(at) or at, how.get(tid) or (f"known issue {known}" if known else "resolved"), customer)
        for tid, summary, at, known, customer in rows
    ]


def workaround_tally(
    engine: Engine, since: datetime | None = None, until: datetime | None = None, project: str | None = None
) -> list[IssueTally]:
    """Per project and known issue: the reports (opened in [since, until)) it answered, and what their reporters
    said of the workaround (shared/rules/workarounds.py)."""
    query = sa_select(TICKETS.c.ticket_id, TICKETS.c.project, TICKETS.c.known_issue).where(
        TICKETS.c.known_issue.is_not(None), TICKETS.c.project.is_not(None)
    )
    if since is not None:
        query = query.where(TICKETS.c.opened_at >= since)
    if until is not None:
        query = query.where(TICKETS.c.opened_at < until)
    if project is not None:
        query = query.where(TICKETS.c.project == project)
    with engine.connect() as conn:
        answered = [(t, p, k) for t, p, k in conn.execute(query).all()]
        said: list[tuple[str, str]] = []
        ids = [a[0] for a in answered]
        for start in range(0, len(ids), 500):
            said += [
                (t, r)
                for t, r in conn.execute(
                    sa_select(TIMELINE.c.ticket_id, TIMELINE.c.reason)
                    .where(TIMELINE.c.ticket_id.in_(ids[start : start + 500]))
                    .where(TIMELINE.c.change == "workaround_answered")
                    .order_by(TIMELINE.c.at, TIMELINE.c.id)
                ).all()
            ]
    return tally(answered, said)


def risk_history(engine: Engine, since: datetime, source: str) -> dict[tuple[str, str], list[datetime]]:
    """Per (project, "tickets" | "breaches"): when each of its tickets opened and each SLA breach was recorded
    since ``since`` (the risk warnings' own tickets, from ``source``, left out)."""
    found: dict[tuple[str, str], list[datetime]] = {}
    opened = sa_select(TICKETS.c.project, TICKETS.c.opened_at).where(
        TICKETS.c.opened_at >= since, TICKETS.c.project.is_not(None), TICKETS.c.source != source
    )
    breached = (
        sa_select(TICKETS.c.project, TIMELINE.c.at)
        .select_from(TIMELINE.join(TICKETS, TIMELINE.c.ticket_id == TICKETS.c.ticket_id))
        .where(TIMELINE.c.change == "breached", TIMELINE.c.at >= since, TICKETS.c.project.is_not(None))
        .where(TICKETS.c.source != source)
    )
    with engine.connect() as conn:
        for measure, query in (("tickets", opened), ("breaches", breached)):
            for project, at in conn.execute(query).all():
                found.setdefault((project, measure), []).append(as_utc(at) or at)
    return found


def open_warnings(engine: Engine, source: str) -> set[tuple[str, str]]:
    """(project, measure) of the risk warnings (tickets from ``source``) still open or acknowledged."""
    query = sa_select(TICKETS.c.labels).where(TICKETS.c.source == source, TICKETS.c.state.in_(UNRESOLVED))
    with engine.connect() as conn:
        rows = [labels or {} for (labels,) in conn.execute(query).all()]
    return {(r["project"], r["risk"]) for r in rows if "project" in r and "risk" in r}


def count_p1(engine: Engine, project: str, since: datetime, until: datetime) -> int:
    """P1 tickets of a project opened in [since, until)."""
    query = (
        sa_select(func.count())
        .select_from(TICKETS)
        .where(TICKETS.c.project == project, TICKETS.c.priority == "P1")
        .where(TICKETS.c.opened_at >= since, TICKETS.c.opened_at < until)
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


HandoverRow = tuple[str, str, str, str, str | None, str | None]
"""(ticket id, summary, priority, state, phase, the reason of its handover entry or None)."""


def handover_rows(engine: Engine, project: str, prefix: str, since: datetime) -> list[HandoverRow]:
    """A project's tickets at the end of its hypercare: those whose timeline has a handover entry (its reason
    starting with ``prefix``) at or after ``since``, and those still open in an earlier phase (not moved yet)."""
    entries = (
        sa_select(TIMELINE.c.ticket_id, func.min(TIMELINE.c.reason).label("reason"))
        .where(TIMELINE.c.change == "reassigned", TIMELINE.c.reason.startswith(prefix, autoescape=True))
        .where(TIMELINE.c.at >= since)
        .group_by(TIMELINE.c.ticket_id)
        .subquery()
    )
    t = TICKETS.c
    query = (
        sa_select(t.ticket_id, t.summary, t.priority, t.state, t.phase, entries.c.reason)
        .select_from(TICKETS.outerjoin(entries, entries.c.ticket_id == t.ticket_id))
        .where(t.project == project)
        .where(
            entries.c.reason.is_not(None) | (t.state.in_(UNRESOLVED) & (t.phase.is_(None) | (t.phase != "operations")))
        )
        .order_by(t.opened_at, t.ticket_id)
    )
    with engine.connect() as conn:
        return [(a, b, c, d, e, f) for a, b, c, d, e, f in conn.execute(query).all()]


def waiting_projects(engine: Engine, projects: Sequence[str]) -> set[str]:
    """Of these projects, those with a ticket still open in an earlier phase than operations (not handed over)."""
    if not projects:
        return set()
    t = TICKETS.c
    query = (
        sa_select(t.project)
        .where(t.project.in_(list(projects)), t.state.in_(UNRESOLVED))
        .where(t.phase.is_(None) | (t.phase != "operations"))
        .distinct()
    )
    with engine.connect() as conn:
        return {p for (p,) in conn.execute(query).all()}


def was_told(engine: Engine, ticket_id: str) -> bool:
    """Whether the delivery log has any record for this key (a ticket, or a digest's id)."""
    query = sa_select(DELIVERIES.c.notification_id).where(DELIVERIES.c.ticket_id == ticket_id).limit(1)
    with engine.connect() as conn:
        return conn.execute(query).first() is not None


def package_mentions(engine: Engine, project: str) -> dict[str, list[str]]:
    """The project's unresolved tickets, each with its timeline's reasons that name a handover package."""
    t = TICKETS.c
    query = (
        sa_select(t.ticket_id, TIMELINE.c.reason)
        .select_from(
            TICKETS.outerjoin(
                TIMELINE,
                (TIMELINE.c.ticket_id == t.ticket_id) & TIMELINE.c.reason.contains("handover package v"),
            )
        )
        .where(t.project == project, t.state.in_(UNRESOLVED))
    )
    found: dict[str, list[str]] = {}
    with engine.connect() as conn:
        for ticket_id, reason in conn.execute(query).all():
            found.setdefault(ticket_id, []).extend([reason] if reason else [])
    return found


@functools.cache
def _timeline_insert(dialect: str) -> Any:
    return dialect_insert(dialect)(TIMELINE).on_conflict_do_nothing(index_elements=["change_id"])


def get_ticket(engine: Engine, ticket_id: str) -> tuple[TicketRow, list[TimelineRow]] | None:
    with Session(engine) as session:
        row = session.get(TicketRow, ticket_id)
        if row is None:
            return None
        timeline = session.exec(
            select(TimelineRow).where(TimelineRow.ticket_id == ticket_id).order_by(TimelineRow.at, TimelineRow.id)  # type: ignore[arg-type]
        ).all()
        session.expunge_all()
        return row, list(timeline)


def latest_ticket_for(engine: Engine, dedup_key: str) -> TicketRow | None:
    """The newest ticket opened for this dedup key (a feedback form's reference is one), or None."""
    with Session(engine) as session:
        row = session.exec(
            select(TicketRow).where(TicketRow.dedup_key == dedup_key).order_by(col(TicketRow.opened_at).desc())
        ).first()
        if row is not None:
            session.expunge(row)
        return row


def list_tickets(
    engine: Engine, *, state: str | None = None, team: str | None = None, limit: int = 100, offset: int = 0
) -> list[TicketRow]:
    with Session(engine) as session:
        query = select(TicketRow)
        if state:
            query = query.where(TicketRow.state == state)
        if team:
            query = query.where(TicketRow.team == team)
        query = query.order_by(TicketRow.opened_at.desc()).offset(offset).limit(limit)  # type: ignore[attr-defined]
        rows = list(session.exec(query).all())
        session.expunge_all()
        return rows


def unresolved_from(engine: Engine, source: str, limit: int = 200) -> list[str]:
    """The ids of the unresolved tickets an integration opened, newest first."""
    with Session(engine) as session:
        query = (
            select(TicketRow.ticket_id)
            .where(TicketRow.source == source, TicketRow.state.in_(UNRESOLVED))  # type: ignore[attr-defined]
            .order_by(TicketRow.opened_at.desc())  # type: ignore[attr-defined]
            .limit(limit)
        )
        return list(session.exec(query).all())


UNRESOLVED = ("open", "acknowledged")
NOT_IN_ROW = {"last_action", "phase_until", "rating", "rated_at"}
"""Ticket fields the tickets table does not keep (the timeline has who did what; survey_answers the ratings)."""


def count_unresolved(engine: Engine) -> list[tuple[str, str, str | None, str | None, int]]:
    """(state, team, project, customer, tickets) of the tickets not yet resolved, for the backlog panels (by team,
    by customer and project; a ticket outside any project has neither)."""
    keys = (TICKETS.c.state, TICKETS.c.team, TICKETS.c.project, TICKETS.c.customer)
    query = sa_select(*keys, func.count()).where(TICKETS.c.state.in_(UNRESOLVED)).group_by(*keys)
    with engine.connect() as conn:
        return [
            (state, team, project, customer, int(n)) for state, team, project, customer, n in conn.execute(query).all()
        ]


def was_delivered(engine: Engine, notification_id: str) -> bool:
    with Session(engine) as session:
        row = session.get(DeliveryRow, notification_id)
        return row is not None and row.status == "sent"


def record_delivery(engine: Engine, delivery: Delivery) -> None:
    with Session(engine) as session:
        row = session.get(DeliveryRow, delivery.notification_id)
        data = delivery.model_dump(exclude={"schema_version"})
        if row is None:
            session.add(DeliveryRow(**data))
        elif row.status != "sent":
            for k, v in data.items():
                setattr(row, k, v)
        session.commit()


W = TypeVar("W", bound=BaseModel)


def _from_row(model: type[W], row: SQLModel) -> W:
    """A row read back as its wire model: SQLite drops the time zone, so every time is made UTC again."""
    return model.model_validate({k: as_utc(v) if isinstance(v, datetime) else v for k, v in row.model_dump().items()})


def add_silence(engine: Engine, silence: Silence) -> None:
    with Session(engine) as session:
        session.add(SilenceRow(**silence.model_dump()))
        session.commit()


def get_silence(engine: Engine, silence_id: str) -> Silence | None:
    with Session(engine) as session:
        row = session.get(SilenceRow, silence_id)
        return _from_row(Silence, row) if row is not None else None


def list_silences(engine: Engine, *, since: datetime | None = None) -> list[Silence]:
    """All silences, newest first; with ``since``, only those that end after it (active and pending ones).
    (Core, not the ORM: the notifier reads them once per batch of events, and the ORM's row set-up was most of
    that read's cost; on SQLite its read goes on the DBAPI connection, shared/store/dbapi.py ``fetch_all``.)"""
    rows: Sequence[Mapping[Any, Any]]
    if since is not None and engine.dialect.name == "sqlite":
        rows = fetch_all(engine, _SILENCES_SINCE, {"since": since})
    else:
        with engine.connect() as conn:
            if since is None:
                rows = conn.execute(_ALL_SILENCES).mappings().all()
            else:
                rows = conn.execute(_SILENCES_SINCE, {"since": since}).mappings().all()
    return [
        Silence.model_validate({k: as_utc(v) if isinstance(v, datetime) else v for k, v in r.items()}) for r in rows
    ]


SILENCES: Table = SilenceRow.__table__  # type: ignore[attr-defined]  # sqlmodel does not type it
_ALL_SILENCES = sa_select(SILENCES).order_by(SILENCES.c.created_at.desc())
_SILENCES_SINCE = _ALL_SILENCES.where(SILENCES.c.ends_at > bindparam("since", type_=SILENCES.c.ends_at.type))
"""Built once: the notifier reads them for every batch, and building the statement was most of that read."""


def expire_silence(engine: Engine, silence_id: str, now: datetime) -> Silence | None:
    """End a silence now (a pending one ends before it starts); expired ones stay as they are."""
    with Session(engine) as session:
        row = session.get(SilenceRow, silence_id)
        if row is None:
            return None
        silence = _from_row(Silence, row)
        if silence.ends_at <= now:
            return silence
        row.ends_at = now
        row.starts_at = min(silence.starts_at, now)
        session.add(row)
        session.commit()
        session.refresh(row)
        return _from_row(Silence, row)


def add_override(engine: Engine, override: Override) -> None:
    with Session(engine) as session:
        session.add(OverrideRow(**override.model_dump()))
        session.commit()


def list_overrides(engine: Engine, *, team: str | None = None, since: datetime | None = None) -> list[Override]:
    """Overrides (of one team), oldest start first; with ``since``, only those that end after it."""
    with Session(engine) as session:
        query = select(OverrideRow)
        if team is not None:
            query = query.where(OverrideRow.team == team)
        if since is not None:
            query = query.where(OverrideRow.ends_at > since)
        return [_from_row(Override, r) for r in session.exec(query.order_by(OverrideRow.starts_at)).all()]  # type: ignore[arg-type]


def delete_override(engine: Engine, team: str, override_id: str) -> Override | None:
    with Session(engine) as session:
        row = session.get(OverrideRow, override_id)
        if row is None or row.team != team:
            return None
        found = _from_row(Override, row)
        session.delete(row)
        session.commit()
        return found


def firing_tickets(engine: Engine) -> list[tuple[str, dict[str, str]]]:
    """(ticket id, matcher labels) of every ticket whose problem fires now: open or acknowledged, alerts firing."""
    with Session(engine) as session:
        rows = session.exec(
            select(TicketRow)
            .where(TicketRow.state.in_(("open", "acknowledged")))  # type: ignore[attr-defined]
            .where(TicketRow.alerts_firing > 0)
        ).all()
        return [(r.ticket_id, matcher_labels(r.labels, r.severity, r.source, r.kind)) for r in rows]


def list_deliveries(engine: Engine, ticket_id: str) -> list[DeliveryRow]:
    with Session(engine) as session:
        rows = list(session.exec(select(DeliveryRow).where(DeliveryRow.ticket_id == ticket_id)).all())
        session.expunge_all()
        return rows


def claim_link(
    engine: Engine,
    *,
    link_id: str,
    ticket_id: str,
    action: str,
    person: str,
    claim: str,
    now: datetime,
    lease_s: float,
) -> bool:
    """Reserve a link for one request (``claim``, unique to it). False when it is used, or claimed by another
    request less than ``lease_s`` ago. A claim older than that (its holder died) is taken over. The primary key
    on ``link_id`` and a conditional update decide between racing requests, so at most one holds a claim."""
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(ActionLinkUseRow).values(
                    link_id=link_id, ticket_id=ticket_id, action=action, person=person, claim=claim, claimed_at=now
                )
            )
        return True
    except IntegrityError:
        pass
    with engine.begin() as conn:
        taken = conn.execute(
            update(ActionLinkUseRow)
            .where(col(ActionLinkUseRow.link_id) == link_id)
            .where(col(ActionLinkUseRow.used_at).is_(None))
            .where(col(ActionLinkUseRow.claimed_at) < now - timedelta(seconds=lease_s))
            .values(claim=claim, claimed_at=now)
        )
        return taken.rowcount == 1


def confirm_link_use(engine: Engine, link_id: str, claim: str, used_at: datetime) -> bool:
    """Mark a claimed link used (after its command was acknowledged); False if the claim was lost meanwhile."""
    with engine.begin() as conn:
        done = conn.execute(
            update(ActionLinkUseRow)
            .where(col(ActionLinkUseRow.link_id) == link_id)
            .where(col(ActionLinkUseRow.claim) == claim)
            .where(col(ActionLinkUseRow.used_at).is_(None))
            .values(used_at=used_at)
        )
        return done.rowcount == 1


def release_link(engine: Engine, link_id: str, claim: str) -> None:
    """Give a claim back (its command was not acknowledged), so the link can be used again."""
    with engine.begin() as conn:
        conn.execute(
            delete(ActionLinkUseRow)
            .where(col(ActionLinkUseRow.link_id) == link_id)
            .where(col(ActionLinkUseRow.claim) == claim)
            .where(col(ActionLinkUseRow.used_at).is_(None))
        )


def get_link_use(engine: Engine, link_id: str) -> ActionLinkUseRow | None:
    with Session(engine) as session:
        row = session.get(ActionLinkUseRow, link_id)
        session.expunge_all()
        return row


__all__ = [
    "ActionLinkUseRow",
    "DeliveryRow",
    "OverrideRow",
    "SilenceRow",
    "SurveyAnswerRow",
    "TicketRow",
    "TimelineRow",
    "add_override",
    "add_silence",
    "as_utc",
    "claim_link",
    "confirm_link_use",
    "delete_override",
    "expire_silence",
    "firing_tickets",
    "get_link_use",
    "get_silence",
    "get_ticket",
    "init_db",
    "list_deliveries",
    "list_overrides",
    "list_silences",
    "list_tickets",
    "make_engine",
    "project",
    "record_delivery",
    "release_link",
    "was_delivered",
]
