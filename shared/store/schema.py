"""The SQL schema's versions: alembic revisions in shared/store/migrations, run by every service as it starts.

Every service calls :func:`upgrade` before it touches the database, and they start together: one of them
migrates while the others wait for it (an advisory lock on PostgreSQL, a lock file beside the database file on
SQLite), then each finds the schema at the newest revision and goes on. A database made before the schema had
revisions (tables, no ``alembic_version``) is migrated from the first revision, which keeps the tables and
indexes it finds and makes those it lacks; its rows stay. Revisions only add (tables, nullable columns), so a
release may run on a schema a newer one has moved on.

A migration is one transaction: on PostgreSQL as it comes, on SQLite on a connection of its own that begins
``BEGIN IMMEDIATE`` itself (the sqlite3 module would otherwise commit each CREATE and ALTER on its own, and a
migration cut short by a crash or a lock would leave half its changes and no record of them).

On PostgreSQL a migration waits at most ``LOCK_TIMEOUT_S`` for each table's lock: an ALTER TABLE queued behind a
long read would otherwise hold every later query on that table (the notifier's, the API's) until the read ends.
It gives up, rolls back and tries again, ``LOCK_ATTEMPTS`` times, then stops the service with an error that says
so.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError

from shared.infra.logging import get_logger

log = get_logger(__name__)

BASELINE = "0001"
"""The revision that is the schema as it stood before revisions."""
BUSY_TIMEOUT_S = 30.0
"""How long a migration on SQLite waits for another connection's write lock."""
LOCK_KEY = 0x7469636B  # "tick": the PostgreSQL advisory lock's key while migrating
LOCK_TIMEOUT_S = 5.0
"""How long a migration on PostgreSQL waits for a table's lock before it rolls back and tries again."""
LOCK_ATTEMPTS = 6


class MigrationLockedError(RuntimeError):
    """A migration on PostgreSQL could not take a table's lock (long transactions hold it)."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, made in code (no alembic.ini): our revisions, and the connection to run them on."""
    config = Config()
    config.set_main_option("script_location", "shared.store:migrations")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    """This release's revisions, read from their files once."""
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The newest revision."""
    revision = _scripts().get_current_head()
    if revision is None:
        raise RuntimeError("shared/store/migrations has no revision")
    return revision


def current(connection: Connection) -> str | None:
    """The revision the database is at (None: none recorded)."""
    return MigrationContext.configure(connection).get_current_revision()


def known(revision: str) -> bool:
    """Whether this release has ``revision`` among its own."""
    return any(s.revision == revision for s in _scripts().walk_revisions())


def upgrade(
    engine: Engine, *, lock_timeout_s: float = LOCK_TIMEOUT_S, attempts: int = LOCK_ATTEMPTS, pause_s: float = 1.0
) -> str:
    """Bring the database to the newest revision (creating it when empty); returns the revision it is at. A
    database a newer release has moved on (a revision this one does not have: a rolling upgrade, or a rollback)
    is left as it is, with a warning: revisions only add, so this release's reads and writes still fit it.
    On PostgreSQL each attempt waits at most ``lock_timeout_s`` for a table's lock (``MigrationLockedError``
    after ``attempts``)."""
    for attempt in range(1, attempts + 1):
        try:
            return _upgrade_once(engine, lock_timeout_s)
        except OperationalError as exc:
            if not _lock_timed_out(exc):
                raise
            log.warning("schema_migration_lock_wait", attempt=attempt, attempts=attempts, lock_timeout_s=lock_timeout_s)
            if attempt < attempts:
                time.sleep(pause_s)
    raise MigrationLockedError(
        f"the schema migration waited {attempts} times {lock_timeout_s:g} s for a table's lock and gave up: "
        "long-running transactions hold it (see pg_stat_activity); start the service again once they end"
    )


def _upgrade_once(engine: Engine, lock_timeout_s: float) -> str:
    with _migration_lock(engine), _migrating(engine) as migrator, migrator.connect() as connection:
        version = current(connection)
        if version is not None and not known(version):
            log.warning("schema_newer_than_release", revision=version, newest_known=head())
            return version
        if version != head():
            if connection.dialect.name == "postgresql":  # this transaction only
                connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(lock_timeout_s * 1000)}ms'")
            command.upgrade(alembic_config(connection), "head")
            connection.commit()
        return head()


def _lock_timed_out(exc: OperationalError) -> bool:
    """PostgreSQL's answer when ``lock_timeout`` ran out (SQLSTATE 55P03, lock_not_available)."""
    return getattr(exc.orig, "sqlstate", None) == "55P03" or "lock timeout" in str(exc.orig).lower()


def _sqlite_file(engine: Engine) -> str | None:
    """The path of the SQLite file ``engine`` opens (None: another database, or SQLite in memory)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


@contextlib.contextmanager
def _migrating(engine: Engine) -> Iterator[Engine]:
    """The engine to migrate with: ``engine`` itself, or for a SQLite file an engine of its own whose
    transactions the driver leaves to SQLAlchemy, begun with ``BEGIN IMMEDIATE`` (DDL included)."""
    if _sqlite_file(engine) is None:
        yield engine
        return
    own = create_engine(engine.url, connect_args={"timeout": BUSY_TIMEOUT_S})

    @event.listens_for(own, "connect")
    def _driver_leaves_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(own, "begin")
    def _begin_immediate(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        yield own
    finally:
        own.dispose()


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Held by one migrating process at a time, across processes."""
    if engine.dialect.name == "postgresql":
        # a session lock on a connection in autocommit: never idle in a transaction while others migrate
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as holder:
            holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
            try:
                yield
            finally:
                holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
        return
    database = _sqlite_file(engine)
    if database is None:
        yield  # SQLite in memory: one process only, nobody to wait for
        return
    with Path(f"{database}.migrate-lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
