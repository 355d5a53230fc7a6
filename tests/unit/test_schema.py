"""The schema's revisions (SQLite; PostgreSQL in tests/integration/test_schema_revisions.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel

from shared.store import db, schema

REPO = Path(__file__).resolve().parents[2]


def at_baseline(path: Path) -> Engine:
    """A database at the first revision (made at the newest, then taken back)."""
    engine = db.make_engine(f"sqlite:///{path}")
    schema.upgrade(engine)
    with engine.connect() as conn:
        command.downgrade(schema.alembic_config(conn), schema.BASELINE)
        conn.commit()
    return engine


def test_a_migration_that_fails_leaves_nothing_half_done(tmp_path: Path) -> None:
    """0002 adds a column, then a table; the table is in the way: the column is not left behind, the version
    stays, and once the way is clear the same migration runs through."""
    engine = at_baseline(tmp_path / "x.db")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE chat_messages (x INTEGER)"))
    with pytest.raises(OperationalError, match="already exists"):
        schema.upgrade(engine)
    with engine.connect() as conn:
        assert schema.current(conn) == schema.BASELINE
    assert "via" not in {c["name"] for c in inspect(engine).get_columns("ticket_timeline")}
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE chat_messages"))
    assert schema.upgrade(engine) == schema.head()


def test_a_database_an_older_release_made_gets_what_it_lacked(tmp_path: Path) -> None:
    """Made before revisions by a release without survey_answers (create_all made only missing tables, and never
    an index on a table it had): the table and the index are made, the rows stay."""
    engine = at_baseline(tmp_path / "x.db")
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text("DROP TABLE survey_answers"))
        conn.execute(text("DROP INDEX ix_tickets_state"))
        conn.execute(
            text(
                "INSERT INTO ticket_timeline (change_id, ticket_id, version, change, actor, reason, at) "
                "VALUES ('c-1', 'tl-1', 1, 'opened', 'router', 'matched', '2026-12-01 00:00:00')"
            )
        )
    assert schema.upgrade(engine) == schema.head()
    found = inspect(engine)
    assert "survey_answers" in found.get_table_names()
    assert "ix_tickets_state" in {i["name"] for i in found.get_indexes("tickets")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT actor FROM ticket_timeline")).scalars().all() == ["router"]
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []


def test_an_empty_database_gets_the_models_schema(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    assert schema.upgrade(engine) == schema.head()
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []


STARTER = """
import sys, time
from pathlib import Path
from shared.store import db, schema
engine, ready, go = db.make_engine(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.001)
print(schema.upgrade(engine))
"""


def test_services_starting_together_migrate_once(tmp_path: Path) -> None:
    """Four processes, imported and waiting, start migrating one new database file at once: all end at the
    newest revision, none fails."""
    url, go = f"sqlite:///{tmp_path / 'x.db'}", tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(4)]
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, url, str(r), str(go)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for r in ready
    ]
    deadline = time.monotonic() + 60
    while not all(r.exists() for r in ready) and time.monotonic() < deadline:  # bounded: they import, then wait
        time.sleep(0.01)
    go.touch()
    answers = [p.communicate(timeout=120) for p in starters]
    assert [(p.returncode, out.decode().strip()) for p, (out, _) in zip(starters, answers, strict=True)] == [
        (0, schema.head())
    ] * 4, [err.decode()[-2000:] for _, err in answers]


def test_a_schema_a_newer_release_moved_on_is_left_as_it_is(tmp_path: Path) -> None:
    """A rolling upgrade: the new release migrated to a revision this one does not have; this one starts anyway
    and changes nothing."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    schema.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    assert not schema.known("9999") and schema.known(schema.head())
    assert schema.upgrade(engine) == "9999"
    with engine.connect() as conn:
        assert schema.current(conn) == "9999"
