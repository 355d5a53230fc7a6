"""The schema's revisions (SQLite; PostgreSQL in tests/integration/test_schema_revisions.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

from shared.store import db, schema

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("tables", "version", "stamp"),
    [
        (set(), None, False),  # empty: made from the first revision on
        ({"tickets", "ticket_timeline"}, None, True),  # made before revisions
        ({"tickets", "alembic_version"}, "0001", False),  # has a version
        ({"something_else"}, None, False),  # not ours: migrated like an empty one, its table left alone
    ],
)
def test_needs_stamp(tables: set[str], version: str | None, stamp: bool) -> None:
    assert schema.needs_stamp(tables, version) is stamp


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
