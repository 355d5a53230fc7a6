"""The schema's revisions on SQLite and PostgreSQL: the newest is the models' schema, and a database made before
revisions is moved on with its rows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlmodel import Session, SQLModel, select

from shared.store import db, schema


def test_the_newest_revision_is_the_models_schema(engine: Engine) -> None:
    with engine.connect() as conn:
        assert schema.current(conn) == schema.head()
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
    assert diff == [], "a model changed without a revision in shared/store/migrations"


def test_a_database_from_before_revisions_keeps_its_rows(engine: Engine) -> None:
    # back to the first revision's tables, and without a version: a database made before revisions
    with engine.connect() as conn:
        command.downgrade(schema.alembic_config(conn), schema.BASELINE)
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(
            text(
                "INSERT INTO ticket_timeline (change_id, ticket_id, version, change, actor, reason, at) "
                "VALUES ('c-1', 'tl-1', 1, 'opened', 'router', 'matched', :at)"
            ),
            {"at": datetime(2026, 12, 1, tzinfo=UTC)},
        )
        conn.commit()
        tables = set(inspect(conn).get_table_names())
    assert "chat_messages" not in tables
    assert "via" not in {c["name"] for c in inspect(engine).get_columns("ticket_timeline")}

    assert schema.upgrade(engine) == schema.head()

    with Session(engine) as session:
        row = session.exec(select(db.TimelineRow)).one()
    assert (row.change_id, row.actor, row.via) == ("c-1", "router", None)
    assert "chat_messages" in set(inspect(engine).get_table_names())
    assert schema.upgrade(engine) == schema.head()  # at the newest: nothing to do


def test_a_migration_behind_a_long_transaction_gives_up_and_runs_once_it_ends(postgres_url: str) -> None:
    """PostgreSQL (SQLite's migration takes the whole database's write lock as it begins): an ALTER TABLE waiting
    behind a long read would hold every later query on the table; the migration waits a bounded time for the
    lock, rolls back, tries again, then stops with an error that says so."""
    engine = db.make_engine(postgres_url)
    db.init_db(engine)
    with engine.connect() as conn:
        command.downgrade(schema.alembic_config(conn), schema.BASELINE)
        conn.commit()
    reader = engine.connect()
    try:
        reader.execute(text("SELECT count(*) FROM ticket_timeline")).scalar()  # a transaction holding its lock
        with pytest.raises(schema.MigrationLockedError, match="long-running transactions"):
            schema.upgrade(engine, lock_timeout_s=0.2, attempts=2, pause_s=0.0)
        with engine.connect() as conn:  # rolled back whole: still at the first revision
            assert schema.current(conn) == schema.BASELINE
            assert "chat_messages" not in set(inspect(conn).get_table_names())
    finally:
        reader.rollback()
        reader.close()
    try:
        assert schema.upgrade(engine, lock_timeout_s=0.2, attempts=2, pause_s=0.0) == schema.head()
    finally:
        SQLModel.metadata.drop_all(engine)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        engine.dispose()
