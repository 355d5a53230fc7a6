"""The schema's revisions on SQLite and PostgreSQL: the newest is the models' schema, and a database made before
revisions is moved on with its rows."""

from __future__ import annotations

from datetime import UTC, datetime

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
