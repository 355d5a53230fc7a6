"""The SQL schema's versions: alembic revisions in shared/store/migrations, run by every service as it starts.

Every service calls :func:`upgrade` before it touches the database, and they start together: one of them
migrates while the others wait for it (an advisory lock on PostgreSQL, a lock file beside the database file on
SQLite), then each finds the schema at the newest revision and goes on. A database made before the schema had
revisions (tables, no ``alembic_version``) is taken as the first revision, which is the schema as it was then,
and moved on from there; its rows stay. Revisions only add (tables, nullable columns), so a release may run on
a schema a newer one has moved on.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from shared.infra.logging import get_logger

log = get_logger(__name__)

BASELINE = "0001"
"""The revision that is the schema as it stood before revisions: a database with its tables and no version
table is stamped with it."""
KNOWN_TABLE = "tickets"
"""A table every database made by ticketloop has had since the beginning."""
LOCK_KEY = 0x7469636B  # "tick": the PostgreSQL advisory lock's key while migrating


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, made in code (no alembic.ini): our revisions, and the connection to run them on."""
    config = Config()
    config.set_main_option("script_location", "shared.store:migrations")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if revision is None:
        raise RuntimeError("shared/store/migrations has no revision")
    return revision


def needs_stamp(tables: set[str], version: str | None) -> bool:
    """A database made before revisions: ticketloop's tables there, no version recorded."""
    return version is None and KNOWN_TABLE in tables


def current(connection: Connection) -> str | None:
    """The revision the database is at (None: none recorded)."""
    return MigrationContext.configure(connection).get_current_revision()


def known(revision: str) -> bool:
    """Whether this release has ``revision`` among its own."""
    return any(s.revision == revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions())


def upgrade(engine: Engine) -> str:
    """Bring the database to the newest revision (creating it when empty); returns the revision it is at. A
    database a newer release has moved on (a revision this one does not have: a rolling upgrade, or a rollback)
    is left as it is, with a warning: revisions only add, so this release's reads and writes still fit it."""
    with _migration_lock(engine), engine.connect() as connection:
        version = current(connection)
        if version is not None and not known(version):
            log.warning("schema_newer_than_release", revision=version, newest_known=head())
            return version
        if needs_stamp(set(inspect(connection).get_table_names()), version):
            command.stamp(alembic_config(connection), BASELINE)
            connection.commit()
        if version != head():
            command.upgrade(alembic_config(connection), "head")
            connection.commit()
        return head()


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Held by one migrating process at a time, across processes."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as holder:
            holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
            try:
                yield
            finally:
                holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
                holder.commit()
        return
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield  # one process only: nobody to wait for
        return
    with Path(f"{database}.migrate-lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
