"""Short SQL calls for an event loop: in place on a local SQLite file, else in a worker thread.

A worker thread costs a busy loop more than a short SQLite statement does: the thread and the loop hand the GIL
back and forth at every call into SQLite (each handoff up to the switch interval), so the notifier's delivery
log writes took about 2.5 ms a round in a worker thread against 0.15 ms in place. In place, a call never waits
for a lock: its connection has no busy timeout, and when another connection holds SQLite's write lock the call
is made again in a worker thread, which waits as every other writer does. PostgreSQL's calls always go to a
worker thread (a network round trip must not hold the loop).

A commit in place never checkpoints SQLite's write-ahead log (that copies pages into the database file and
syncs it: milliseconds to tens of them on a loaded disk, which the loop would wait out); ``checkpoint_wal``
does it from a worker thread, and the owner calls it every few seconds. SQLite starts the log over (instead of
appending to it) only when a write begins with every frame of the log copied, and writes made during a
checkpoint are frames it has not copied: under a steady stream of writes the log never started over and grew
without end (bench/notify_fanout's paced phase: 1.3 GB in 40 s), and every page read searched a larger index of
it. So once the log holds ``RESTART_FRAMES``, the next checkpoint holds writes in place while it runs (about
20 ms here, mostly the database file's sync), and the write after it starts the log over (its file then cut
back to ``journal_size_limit``, shared/store/db.py).
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


RESTART_FRAMES = 16_384
"""A log of this many frames (64 MiB of 4 KiB pages) or more is checkpointed with writes in place held, so that it
starts over; a smaller one is checkpointed beside them (it starts over by itself whenever a checkpoint meets no
write). Reads in place (``read``) are not held. With a limit of 1 GiB the notifier's log reached 500 MB in 25 s of
bench/notify_fanout's paced stream at 3,400 notifications a second (about 20 MB of log a second), its writer's
rounds took 3.6 times as long from there on, and the stream fell behind; at 128 MiB a hold took 75-80 ms about
every 6 s, which the batches' reads waited out until reads stopped waiting for it."""


def _checkpoint(engine: Engine) -> tuple[int, int]:
    """A passive checkpoint; returns the log's frames and how many of them are copied."""
    with engine.connect() as conn:
        row = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").first()
    if row is None or row[1] is None or row[1] < 0:
        return 0, 0
    return int(row[1]), int(row[2])


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

    def __init__(self, engine: Engine, restart_frames: int = RESTART_FRAMES) -> None:
        self.engine = engine
        self.restart_frames = restart_frames
        self.log_frames = 0
        """The log's frames at the last checkpoint."""
        url = in_place_url(engine)
        self.in_place = make_engine(url, busy_timeout_ms=0, wal_autocheckpoint=False) if url is not None else None
        self._checkpointing: asyncio.Event | None = None
        """Set when the running checkpoint is done (None: none runs); calls in place wait for it."""

    async def __call__(self, fn: Callable[Concatenate[Engine, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
        while self._checkpointing is not None:
            await self._checkpointing.wait()
        return await self.read(fn, *args, **kwargs)

    async def read(self, fn: Callable[Concatenate[Engine, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
        """As a call, for ``fn`` that only reads: in place even while a checkpoint holds writes (a reader adds
        nothing to the log and does not keep it from being copied). A call is this once no checkpoint holds."""
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
        if self.in_place is None or self._checkpointing is not None:
            return False
        try:
            fn(self.in_place, *args, **kwargs)
        except Exception:  # noqa: BLE001 - not run: the caller's usual way retries and logs it
            return False
        return True

    async def checkpoint_wal(self) -> None:
        """Copy the write-ahead log into the database file (SQLite, when writes are made in place), from a worker
        thread; once the log is long, with calls in place waiting meanwhile, so that the next write starts it
        over. Passive: it never waits for a writer or a reader elsewhere."""
        if self.in_place is None or self._checkpointing is not None:
            return
        if self.log_frames < self.restart_frames:
            self.log_frames, _ = await asyncio.to_thread(_checkpoint, self.engine)
            return
        done = self._checkpointing = asyncio.Event()
        try:
            frames, copied = await asyncio.to_thread(_checkpoint, self.engine)
            # every frame copied and no write here since: the next write starts the log over (a reader or a writer
            # in another process may still keep it from that: then the next checkpoint holds writes again)
            self.log_frames = 0 if copied >= frames else frames
        finally:
            self._checkpointing = None
            done.set()

    def dispose(self) -> None:
        if self.in_place is not None:
            self.in_place.dispose()
