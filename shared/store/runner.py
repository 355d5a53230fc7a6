"""Short SQL calls for an event loop: in place on a local SQLite file, else in a worker thread.

A worker thread costs a busy loop more than a short SQLite statement does: the thread and the loop hand the GIL
back and forth at every call into SQLite (each handoff up to the switch interval), so the notifier's delivery
log writes took about 2.5 ms a round in a worker thread against 0.15 ms in place. In place, a call never waits
for a lock: its connection has no busy timeout, and when another connection holds SQLite's write lock the call
is made again in a worker thread, which waits as every other writer does. PostgreSQL's calls always go to a
worker thread (a network round trip must not hold the loop).

A commit in place never checkpoints SQLite's write-ahead log (that copies pages into the database file and
syncs it: milliseconds to tens of them on a loaded disk, which the loop would wait out); ``checkpoint_wal``
does it from a worker thread, and the owner calls it every few seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from shared.store.db import make_engine

P = ParamSpec("P")
R = TypeVar("R")


def _checkpoint(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")


def in_place_url(engine: Engine) -> str | None:
    """The URL for an in-place twin of ``engine``: only a SQLite database in a file (an in-memory one would be
    another database)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return url.render_as_string(hide_password=False)


def is_locked(exc: OperationalError) -> bool:
    """SQLite's answer when another connection holds the lock (``database is locked``, ``... busy``)."""
    text = str(exc.orig).lower()
    return "locked" in text or "busy" in text


class SqlRunner:
    """Runs ``fn(engine, *args)`` for the loop: in place on SQLite (falling back to a worker thread while the
    write lock is held elsewhere), in a worker thread otherwise. ``fn`` must make its writes in one transaction:
    a call that fails in place is made again whole."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        url = in_place_url(engine)
        self.in_place = make_engine(url, busy_timeout_ms=0, wal_autocheckpoint=False) if url is not None else None

    async def __call__(self, fn: Callable[Concatenate[Engine, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
        if self.in_place is not None:
            try:
                return fn(self.in_place, *args, **kwargs)
            except OperationalError as exc:
                if not is_locked(exc):
                    raise
        return await asyncio.to_thread(fn, self.engine, *args, **kwargs)

    def now(self, fn: Callable[Concatenate[Engine, P], object], *args: P.args, **kwargs: P.kwargs) -> bool:
        """Run ``fn`` in place at once if this database allows it (SQLite); False when it did not run: another
        database, a lock held elsewhere, or any error (the caller then takes its usual way, which reports it)."""
        if self.in_place is None:
            return False
        try:
            fn(self.in_place, *args, **kwargs)
        except Exception:  # noqa: BLE001 - not run: the caller's usual way retries and logs it
            return False
        return True

    async def checkpoint_wal(self) -> None:
        """Copy the write-ahead log into the database file (SQLite, when writes are made in place), from a worker
        thread; passive: it never waits for a writer or a reader."""
        if self.in_place is not None:
            await asyncio.to_thread(_checkpoint, self.engine)

    def dispose(self) -> None:
        if self.in_place is not None:
            self.in_place.dispose()
