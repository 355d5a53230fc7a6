"""The notifier's outbox: every planned notification is either delivered (its record in the delivery log) or
written here before its source event counts as handled, and leaves it only when it was delivered or given up.

So a send never has to happen inside the event's Kafka transaction: the notifier sends a new notification at
once and keeps it here only if it waits (a failure, a rate limit, a busy lane when the consumer commits); each
target's lane sends what waits when its rate limit, its circuit breaker and its retry schedule allow. A crash
loses nothing (the lanes reload the rows of the partitions they are assigned); the delivery log's stable
notification ids keep a replayed event from adding a row twice or sending again what was delivered.

Rows: ``pending`` (due at ``due_at``), ``failed`` (given up: kept, with the reason, for ``ticketloop deliveries
failed`` and ``redrive``) and ``redrive`` (asked to be sent again; the notifier takes it back as pending).
The payload is opaque here (the notifier's message as JSON).

A digest (several pending notifications of one target folded into one message under its rate limit) is kept
here with its members before it is sent (``Keep``: a ``notify_digests`` row with the message, its members in the
outbox) and leaves once they are delivered or given up (``Drop``). A notifier that dies while a digest is on its
way sends that same message again, once (``digests``), instead of folding its members anew into other messages;
kept digests whose members are all gone are deleted by ``forget_done_digests``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Column, Connection, Engine, Table, bindparam, insert, update
from sqlalchemy import delete as sa_delete
from sqlalchemy import select as sa_select
from sqlmodel import Field, Session, SQLModel, col, select

from shared.events import Delivery
from shared.store.db import DELIVERIES, as_utc, dialect_insert
from shared.store.dbapi import execute_many

PENDING, FAILED, REDRIVE = "pending", "failed", "redrive"


class OutboxRow(SQLModel, table=True):
    __tablename__ = "notify_outbox"

    notification_id: str = Field(primary_key=True)
    seq: int = Field(index=True)
    """Order of planning (per process start: a monotonic counter seeded from the clock), for FIFO per target."""
    ticket_id: str = Field(index=True)
    team: str
    channel: str
    target: str
    kind: str
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    source_topic: str
    source_partition: int
    status: str = Field(index=True)
    created_at: datetime
    due_at: datetime
    attempts: int = 0
    last_error: str = ""


OUTBOX: Table = OutboxRow.__table__  # type: ignore[attr-defined]  # sqlmodel does not type it


class DigestRow(SQLModel, table=True):
    """A digest formed and (perhaps) sent, not yet known delivered: its message, whose ``data["digest"]`` lists
    its members (outbox rows)."""

    __tablename__ = "notify_digests"

    digest_id: str = Field(primary_key=True)
    channel: str
    target: str
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime


DIGESTS: Table = DigestRow.__table__  # type: ignore[attr-defined]  # sqlmodel does not type it


class StartRow(SQLModel, table=True):
    """A notifier's start: the worker that died before it may have had a message on its way to each target, not
    written down (a restarted lane's rate window counts one for each start in it)."""

    __tablename__ = "notify_starts"

    start_id: str = Field(primary_key=True)
    started_at: datetime = Field(index=True)


STARTS: Table = StartRow.__table__  # type: ignore[attr-defined]  # sqlmodel does not type it
STARTS_KEPT = timedelta(days=1)
"""How long a start is remembered (far longer than any vendor's rate window)."""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    notification_id: str
    seq: int
    ticket_id: str
    team: str
    channel: str
    target: str
    kind: str
    payload: dict[str, Any]
    source_topic: str
    source_partition: int
    created_at: datetime
    due_at: datetime
    attempts: int = 0
    last_error: str = ""
    status: str = PENDING
    source_offset: int = -1
    """The offset of the event it was planned from, while it is held only in memory (-1: in the outbox, or not
    known): a commit stops below it until it is sent or written (services/notifier/stages.py ``at_commit``)."""


def _item(row: OutboxRow) -> OutboxItem:
    return OutboxItem(
        notification_id=row.notification_id,
        seq=row.seq,
        ticket_id=row.ticket_id,
        team=row.team,
        channel=row.channel,
        target=row.target,
        kind=row.kind,
        payload=dict(row.payload),
        source_topic=row.source_topic,
        source_partition=row.source_partition,
        created_at=as_utc(row.created_at) or row.created_at,
        due_at=as_utc(row.due_at) or row.due_at,
        attempts=row.attempts,
        last_error=row.last_error,
        status=row.status,
    )


def add(engine: Engine, items: Sequence[OutboxItem]) -> list[OutboxItem]:
    """Write the items that are neither delivered already nor in the outbox; returns those written (in order;
    an id that comes twice, the first time). One transaction: an event's notifications are all in, or none."""
    if not items:
        return []
    ids = [i.notification_id for i in items]
    with engine.begin() as conn:
        known = set(conn.execute(_KNOWN, {"ids": ids}).scalars())
        fresh = []
        for i in items:
            if i.notification_id not in known:
                known.add(i.notification_id)
                fresh.append(i)
        if fresh:
            conn.execute(_INSERT, [_row(i) for i in fresh])
    return fresh


_KNOWN = (
    sa_select(OUTBOX.c.notification_id)
    .where(OUTBOX.c.notification_id.in_(bindparam("ids", expanding=True)))
    .union_all(
        sa_select(DELIVERIES.c.notification_id).where(
            DELIVERIES.c.notification_id.in_(bindparam("ids", expanding=True)), DELIVERIES.c.status == "sent"
        )
    )
)
"""Of these ids, those in the outbox or delivered already (one statement, built once)."""
_INSERT = insert(OUTBOX)


def _row(i: OutboxItem) -> dict[str, Any]:
    return {
        "notification_id": i.notification_id,
        "seq": i.seq,
        "ticket_id": i.ticket_id,
        "team": i.team,
        "channel": i.channel,
        "target": i.target,
        "kind": i.kind,
        "payload": i.payload,
        "source_topic": i.source_topic,
        "source_partition": i.source_partition,
        "status": PENDING,
        "created_at": i.created_at,
        "due_at": i.due_at,
        "attempts": i.attempts,
        "last_error": i.last_error,
    }


def save(conn: Connection, items: Sequence[OutboxItem]) -> None:
    """Rows for items the notifier holds and has not written yet (sent first, kept here once they wait): a row
    already there is left as it is."""
    if items:
        conn.execute(_save(conn.dialect.name), [_row(i) for i in items])


@functools.cache
def _save(dialect: str) -> Any:
    return dialect_insert(dialect)(OUTBOX).on_conflict_do_nothing(index_elements=["notification_id"])


@dataclass(frozen=True, slots=True)
class Digest:
    """A digest as kept: ``payload`` is its message (the notifier's JSON); ``members`` its notification ids."""

    digest_id: str
    channel: str
    target: str
    payload: dict[str, Any]
    created_at: datetime

    @property
    def members(self) -> list[str]:
        return members_of(self.payload)


def member_ids(data: Mapping[str, Any]) -> list[str]:
    """The notification ids a digest message's ``data`` lists (``data["digest"]``; none: not a digest)."""
    found = data.get("digest")
    return [str(m) for m in found] if isinstance(found, list) else []


def members_of(payload: Mapping[str, Any]) -> list[str]:
    """A kept digest's members: those its message (the notifier's JSON) lists."""
    return member_ids(payload.get("data") or {})


@dataclass(frozen=True, slots=True)
class Save:
    """Keep these items in the outbox (they wait: a busy lane, a rate limit, a failure, a commit)."""

    items: Sequence[OutboxItem]


@dataclass(frozen=True, slots=True)
class Finish:
    """Delivered or muted: the rows leave the outbox and the records enter the delivery log."""

    ids: Sequence[str]
    records: Sequence[Delivery]


@dataclass(frozen=True, slots=True)
class Reschedule:
    notification_id: str
    due_at: datetime
    attempts: int
    error: str


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Kept as failed, for listing and redrive, and recorded as failed."""

    record: Delivery


@dataclass(frozen=True, slots=True)
class Keep:
    """A digest about to be sent: its message kept, and those of its members not in the outbox yet written."""

    digest: Digest
    items: Sequence[OutboxItem]


@dataclass(frozen=True, slots=True)
class Drop:
    """A digest delivered or given up: no longer to be sent again."""

    digest_id: str


Op = Save | Finish | Reschedule | GiveUp | Keep | Drop
"""One write of the notifier's single writer; a round writes its ops in order, in one transaction."""


def coalesced(ops: Iterable[Op]) -> list[Op]:
    """Neighbouring saves and finishes merged (one statement each instead of one per lane); the order of writes
    is kept, so a save queued before a finish of the same item is written before it."""
    out: list[Op] = []
    for op in ops:
        last = out[-1] if out else None
        if isinstance(op, Save) and isinstance(last, Save):
            out[-1] = Save([*last.items, *op.items])
        elif isinstance(op, Finish) and isinstance(last, Finish):
            out[-1] = Finish([*last.ids, *op.ids], [*last.records, *op.records])
        else:
            out.append(op)
    return [op for op in out if not (isinstance(op, Finish) and not op.ids and not op.records)]


def write(engine: Engine, ops: Sequence[Op]) -> None:
    """A round of the writer: its ops in order, in one transaction. A round of finishes alone on SQLite (the
    paced stream's every answered send) goes on the DBAPI connection (shared/store/dbapi.py): the same statements
    at under half the cost."""
    merged = coalesced(ops)
    if not merged:
        return
    if engine.dialect.name == "sqlite" and all(isinstance(op, Finish) for op in merged):
        execute_many(engine, [step for op in merged if isinstance(op, Finish) for step in _finish_steps(op, "sqlite")])
        return
    with engine.begin() as conn:
        for op in merged:
            if isinstance(op, Save):
                save(conn, op.items)
            elif isinstance(op, Finish):
                for statement, rows in _finish_steps(op, conn.dialect.name):
                    if rows:
                        conn.execute(statement, rows)
            elif isinstance(op, Reschedule):
                conn.execute(
                    _RESCHEDULE,
                    {"nid": op.notification_id, "due_at": op.due_at, "attempts": op.attempts, "error": op.error},
                )
            elif isinstance(op, GiveUp):
                _give_up(conn, op.record)
            elif isinstance(op, Keep):
                save(conn, op.items)
                d = op.digest
                row = {"digest_id": d.digest_id, "channel": d.channel, "target": d.target, "payload": d.payload}
                conn.execute(_keep(conn.dialect.name), [{**row, "created_at": d.created_at}])
            else:
                conn.execute(sa_delete(DIGESTS).where(DIGESTS.c.digest_id == op.digest_id))


@functools.cache
def _keep(dialect: str) -> Any:
    return dialect_insert(dialect)(DIGESTS).on_conflict_do_nothing(index_elements=["digest_id"])


_RESCHEDULE = (
    update(OUTBOX)
    .where(OUTBOX.c.notification_id == bindparam("nid"))
    .values(due_at=bindparam("due_at"), attempts=bindparam("attempts"), last_error=bindparam("error"))
)


def pending(engine: Engine, partitions: Iterable[tuple[str, int]]) -> list[OutboxItem]:
    """The pending items of these (topic, partition)s, in planning order."""
    wanted = set(partitions)
    if not wanted:
        return []
    with Session(engine) as session:
        rows = session.exec(select(OutboxRow).where(OutboxRow.status == PENDING).order_by(col(OutboxRow.seq)))
        return [_item(r) for r in rows if (r.source_topic, r.source_partition) in wanted]


def digests(engine: Engine, pending_ids: Iterable[str]) -> list[Digest]:
    """The kept digests with a member among ``pending_ids`` (the items a worker just loaded), oldest first. Reads
    only: a worker loading its partitions never waits for another's write lock here."""
    loaded = set(pending_ids)
    with engine.connect() as conn:
        rows = conn.execute(sa_select(DIGESTS).order_by(DIGESTS.c.created_at)).mappings().all()
    found = [
        Digest(
            r["digest_id"], r["channel"], r["target"], dict(r["payload"]), as_utc(r["created_at"]) or r["created_at"]
        )
        for r in rows
    ]
    return [d for d in found if loaded.intersection(d.members)]


def forget_done_digests(engine: Engine) -> int:
    """Delete the kept digests none of whose members is pending any more (delivered or given up by a worker that
    died before its ``Drop`` was written, or let go by a worker that lost their partitions); returns how many."""
    with engine.begin() as conn:
        kept = conn.execute(sa_select(DIGESTS.c.digest_id, DIGESTS.c.payload)).all()
        members = {digest_id: members_of(payload) for digest_id, payload in kept}
        wanted = sorted({m for found in members.values() for m in found})
        pending: set[str] = set()
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start : start + _IN_CHUNK]
            pending.update(conn.execute(_PENDING_OF, {"ids": chunk}).scalars())
        gone = [digest_id for digest_id, found in members.items() if not pending.intersection(found)]
        for start in range(0, len(gone), _IN_CHUNK):
            conn.execute(sa_delete(DIGESTS).where(DIGESTS.c.digest_id.in_(gone[start : start + _IN_CHUNK])))
    return len(gone)


_IN_CHUNK = 1000
"""Ids bound to one statement at most (PostgreSQL's driver takes 65,535 parameters, SQLite 250,000 here)."""
_PENDING_OF = sa_select(OUTBOX.c.notification_id).where(
    OUTBOX.c.notification_id.in_(bindparam("ids", expanding=True)), OUTBOX.c.status == PENDING
)


def _finish_steps(op: Finish, dialect: str) -> list[tuple[Any, list[dict[str, Any]]]]:
    """A finish's statements and their rows (either may have none): the rows leave the outbox, the records enter
    the delivery log. Run through SQLAlchemy's connection, or on the DBAPI connection (``execute_many``)."""
    return [
        (_DELETE, [{"nid": i} for i in dict.fromkeys(op.ids)]),
        (_upsert(dialect), _delivery_rows(op.records)),
    ]


_DELETE = sa_delete(OUTBOX).where(OUTBOX.c.notification_id == bindparam("nid"))
"""Built once: the notifier's hottest statements are compiled from SQLAlchemy's cache, not rebuilt per write."""
_UPDATED = ("ticket_id", "kind", "channel", "recipient", "status", "attempts", "error", "at")


@functools.cache
def _upsert(dialect: str) -> Any:
    """The delivery log's upsert for this database: a record already ``sent`` is never overwritten."""
    stmt = dialect_insert(dialect)(DELIVERIES)
    updated = {c: stmt.excluded[c] for c in _UPDATED}
    return stmt.on_conflict_do_update(
        index_elements=["notification_id"], set_=updated, where=DELIVERIES.c.status != "sent"
    )


def upsert_deliveries(conn: Connection, records: Sequence[Delivery]) -> None:
    """Records into the delivery log in one statement (executemany); a record already ``sent`` is never
    overwritten (a replay after a crash may report an older outcome)."""
    if records:
        conn.execute(_upsert(conn.dialect.name), _delivery_rows(records))  # executemany: one compiled statement


def _delivery_rows(records: Sequence[Delivery]) -> list[dict[str, Any]]:
    """The delivery log's rows of these records, one per id (the last one's: a statement takes an id once)."""
    by_id = {r.notification_id: r.model_dump(exclude={"schema_version"}) for r in records}
    return list(by_id.values())


def record_start(engine: Engine, start_id: str, at: datetime) -> None:
    """This notifier starts (before any lane sends); starts older than ``STARTS_KEPT`` go."""
    with engine.begin() as conn:
        conn.execute(sa_delete(STARTS).where(STARTS.c.started_at < at - STARTS_KEPT))
        conn.execute(insert(STARTS), [{"start_id": start_id, "started_at": at}])


def recent_starts(engine: Engine, since: datetime) -> list[datetime]:
    """When notifiers started since ``since``, oldest first."""
    query = sa_select(STARTS.c.started_at).where(STARTS.c.started_at >= since).order_by(STARTS.c.started_at)
    with engine.connect() as conn:
        return [as_utc(at) or at for at in conn.execute(query).scalars()]


def recent_sends(engine: Engine, channel: str, target: str, since: datetime) -> list[datetime]:
    """When messages went to a target since ``since`` (the delivery log's sent records; a digest's members share
    one time, so each time is one message), oldest first: a restarted worker's rate limit starts from these."""
    log = DELIVERIES
    query = (
        sa_select(log.c.at)
        .where(log.c.channel == channel, log.c.recipient == target, log.c.status == "sent", log.c.at >= since)
        .distinct()
    )
    with engine.connect() as conn:
        found = [as_utc(at) or at for at in conn.execute(query).scalars()]
    return sorted(found)


def _give_up(conn: Connection, record: Delivery) -> None:
    conn.execute(
        update(OUTBOX)
        .where(OUTBOX.c.notification_id == record.notification_id)
        .values(status=FAILED, attempts=record.attempts, last_error=record.error)
    )
    upsert_deliveries(conn, [record])


def failed(engine: Engine, limit: int = 1000) -> list[OutboxItem]:
    with Session(engine) as session:
        rows = session.exec(
            select(OutboxRow).where(OutboxRow.status == FAILED).order_by(col(OutboxRow.seq)).limit(limit)
        )
        return [_item(r) for r in rows]


def redrive(engine: Engine, notification_id: str, now: datetime) -> bool:
    """Ask for a failed item to be sent again (the notifier picks it up); False when there is no such failed item.
    Its give-up time starts again from now (else an item given up for its age would get one try only)."""
    with Session(engine) as session:
        row = session.get(OutboxRow, notification_id)
        if row is None or row.status != FAILED:
            return False
        row.status, row.attempts, row.due_at, row.created_at = REDRIVE, 0, now, now
        session.add(row)
        session.commit()
        return True


def take_redriven(engine: Engine, partitions: Iterable[tuple[str, int]]) -> list[OutboxItem]:
    """The items asked to be redriven among these partitions, now pending again."""
    wanted = set(partitions)
    with Session(engine) as session:
        rows = [
            r
            for r in session.exec(select(OutboxRow).where(OutboxRow.status == REDRIVE))
            if (r.source_topic, r.source_partition) in wanted
        ]
        for r in rows:
            r.status = PENDING
            session.add(r)
        session.commit()
        return [_item(r) for r in rows]
