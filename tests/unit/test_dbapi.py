"""shared/store/dbapi.py: Core statements run on the DBAPI connection write what SQLAlchemy's ``execute`` writes,
in one transaction, and fail as SQLAlchemy's errors (a held lock is the ``OperationalError`` callers wait out)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.exc import IntegrityError, OperationalError

from shared.events import Delivery
from shared.rules.silences import Silence
from shared.store import db, outbox
from shared.store.dbapi import compile_raw, execute_many, fetch_all
from shared.store.runner import is_locked

AT = datetime(2026, 12, 4, 3, 30, 15, 123456, tzinfo=UTC)


def record(n: int, status: str = "sent", at: datetime = AT) -> Delivery:
    return Delivery(
        notification_id=f"n{n}",
        ticket_id=f"tl-{n}",
        kind="assignment",
        channel="webhook",
        recipient="/hook/0",
        status=status,
        attempts=2,
        error="in a digest of 3" if status == "sent" else "HTTP 503",
        at=at,
    )


def row_of(engine: Engine, notification_id: str) -> tuple[object, ...]:
    """A delivery log row as stored (the raw column values, but the id)."""
    with engine.connect() as conn:
        raw = conn.exec_driver_sql(
            "SELECT ticket_id, kind, channel, recipient, status, attempts, error, at FROM deliveries "
            "WHERE notification_id = ?",
            (notification_id,),
        ).one()
    return tuple(raw)


def test_the_rows_are_those_sqlalchemy_writes(engine: Engine) -> None:
    upsert = outbox._upsert("sqlite")
    with engine.begin() as conn:
        conn.execute(upsert, [record(1).model_dump(exclude={"schema_version"})])
    execute_many(engine, [(upsert, [{**record(1).model_dump(exclude={"schema_version"}), "notification_id": "n2"}])])
    assert row_of(engine, "n2") == row_of(engine, "n1"), "the same bytes in every column, the time included"
    assert sorted((d.notification_id, d.at.replace(tzinfo=UTC)) for d in db.list_deliveries(engine, "tl-1")) == [
        ("n1", AT),
        ("n2", AT),
    ]


def test_an_aware_time_in_another_zone_is_stored_as_sqlalchemy_stores_it(engine: Engine) -> None:
    shanghai = AT.astimezone(timezone(timedelta(hours=8)))
    upsert = outbox._upsert("sqlite")
    with engine.begin() as conn:
        conn.execute(upsert, [record(1, at=shanghai).model_dump(exclude={"schema_version"})])
    outbox.write(engine, [outbox.Finish([], [record(2, at=shanghai).model_copy(update={"ticket_id": "tl-1"})])])
    assert row_of(engine, "n2") == row_of(engine, "n1")


def test_the_statements_own_values_are_used(engine: Engine) -> None:
    """The upsert's ``WHERE status != 'sent'`` is a value of the statement, not of the rows: a sent record is
    never overwritten by a later failure."""
    outbox.write(engine, [outbox.Finish([], [record(1)])])
    outbox.write(engine, [outbox.Finish([], [record(1, status="failed")])])
    assert row_of(engine, "n1")[4] == "sent"
    outbox.write(engine, [outbox.Finish([], [record(2, status="failed")])])
    outbox.write(engine, [outbox.Finish([], [record(2)])])
    assert row_of(engine, "n2")[4] == "sent", "a failure is replaced by the later success"


def test_a_finish_takes_the_row_out_of_the_outbox(engine: Engine) -> None:
    item = outbox.OutboxItem(
        notification_id="n1",
        seq=1,
        ticket_id="tl-1",
        team="operations",
        channel="webhook",
        target="/hook/0",
        kind="assignment",
        payload={"kind": "assignment", "subject": "s", "text": "t"},
        source_topic="tickets",
        source_partition=0,
        created_at=AT,
        due_at=AT,
    )
    assert outbox.add(engine, [item]) == [item]
    outbox.write(engine, [outbox.Finish(["n1"], [record(1)]), outbox.Finish(["n1"], [record(1)])])
    assert outbox.pending(engine, [("tickets", 0)]) == []
    assert db.was_delivered(engine, "n1")


def test_a_failing_step_rolls_the_whole_transaction_back(engine: Engine) -> None:
    upsert = outbox._upsert("sqlite")
    good = record(1).model_dump(exclude={"schema_version"})
    bad = {**record(2).model_dump(exclude={"schema_version"}), "ticket_id": None}  # NOT NULL
    with pytest.raises(IntegrityError) as caught:
        execute_many(engine, [(upsert, [good]), (upsert, [bad])])
    assert "deliveries.ticket_id" in str(caught.value)
    with engine.connect() as conn:
        assert list(conn.execute(select(db.DELIVERIES.c.notification_id))) == [], "the first step is undone"
    execute_many(engine, [(upsert, [good])])
    assert row_of(engine, "n1")[4] == "sent", "the connection went back to its pool usable"


def test_a_lock_held_elsewhere_is_sqlalchemys_operational_error(engine: Engine) -> None:
    in_place = db.make_engine(str(engine.url), busy_timeout_ms=0, wal_autocheckpoint=False)
    holder = engine.raw_connection()
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(OperationalError) as caught:
            outbox.write(in_place, [outbox.Finish([], [record(1)])])
        assert is_locked(caught.value), "the runner's callers wait this out in a worker thread"
        holder.rollback()
        outbox.write(in_place, [outbox.Finish([], [record(1)])])
    finally:
        holder.close()
        in_place.dispose()
    assert db.was_delivered(engine, "n1")


def test_a_dialect_with_named_parameters_is_refused() -> None:
    with pytest.raises(ValueError, match="positional"):
        compile_raw(outbox._DELETE, create_engine("postgresql+psycopg://u:p@127.0.0.1/db").dialect)


def silence(n: int, ends_at: datetime) -> Silence:
    return Silence(
        silence_id=f"s{n}",
        matchers=['service="db"', f'host=~"db-{n}.*"'],
        starts_at=AT - timedelta(hours=1),
        ends_at=ends_at,
        created_by="ian",
        comment="维护窗口 — disk swap",
        created_at=AT - timedelta(minutes=n),
    )


def test_a_read_gives_the_values_sqlalchemy_reads(engine: Engine) -> None:
    shanghai = timezone(timedelta(hours=8))
    for n, ends_at in enumerate([AT + timedelta(hours=2), (AT + timedelta(days=1)).astimezone(shanghai)]):
        db.add_silence(engine, silence(n, ends_at))
    with engine.connect() as conn:
        core = [dict(r) for r in conn.execute(db._SILENCES_SINCE, {"since": AT}).mappings()]
    raw = fetch_all(engine, db._SILENCES_SINCE, {"since": AT})
    assert len(core) == 2
    assert raw == core, "the same columns, the matchers a list again, the times as datetimes"
    assert db.list_silences(engine, since=AT) == [
        silence(0, AT + timedelta(hours=2)),
        silence(1, AT + timedelta(days=1)),
    ]


def test_a_read_takes_only_the_rows_its_parameters_select(engine: Engine) -> None:
    db.add_silence(engine, silence(1, AT - timedelta(seconds=1)))  # ended
    db.add_silence(engine, silence(2, AT + timedelta(seconds=1)))
    assert [r["silence_id"] for r in fetch_all(engine, db._SILENCES_SINCE, {"since": AT})] == ["s2"]
    assert fetch_all(engine, db._SILENCES_SINCE, {"since": AT + timedelta(days=1)}) == []


def test_a_failing_read_is_sqlalchemys_error_and_leaves_the_pool_usable(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE silences")
    with pytest.raises(OperationalError, match="no such table: silences"):
        fetch_all(engine, db._SILENCES_SINCE, {"since": AT})
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1
