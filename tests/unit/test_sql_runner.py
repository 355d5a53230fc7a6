"""SqlRunner: short SQL calls in place on a SQLite file, in a worker thread while another connection holds the
write lock (never an error, never a wait on the loop), and always in a worker thread for other databases."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from shared.store import db
from shared.store.runner import SqlRunner, in_place_url


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'runner.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    yield engine
    engine.dispose()


def insert(engine: Engine, n: int) -> int:
    """Writes a row; returns the thread it ran on."""
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t (n) VALUES (:n)"), {"n": n})
    return threading.get_ident()


def rows(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT n FROM t ORDER BY n")).scalars())


async def test_a_call_on_a_sqlite_file_runs_in_place(engine: Engine) -> None:
    runner = SqlRunner(engine)
    try:
        assert await runner(insert, 1) == threading.get_ident()
    finally:
        runner.dispose()
    assert rows(engine) == [1]


async def test_while_another_connection_holds_the_write_lock_the_call_waits_in_a_worker_thread(
    engine: Engine,
) -> None:
    runner = SqlRunner(engine)
    holder = engine.raw_connection()
    try:
        holder.execute("BEGIN IMMEDIATE")  # the write lock, as another process's transaction would hold it
        holder.execute("INSERT INTO t (n) VALUES (0)")
        call = asyncio.create_task(runner(insert, 2))
        await asyncio.sleep(0)  # the call tries in place, finds the lock held and goes to a worker thread
        holder.commit()
        ran_on = await asyncio.wait_for(call, 30)
    finally:
        holder.close()
        runner.dispose()
    assert ran_on != threading.get_ident(), "it waited in a worker thread, not on the loop"
    assert rows(engine) == [0, 2]


def test_only_a_sqlite_file_runs_in_place(tmp_path: Path) -> None:
    assert in_place_url(create_engine(f"sqlite:///{tmp_path / 'x.db'}")) is not None
    assert in_place_url(create_engine("sqlite://")) is None
    assert in_place_url(create_engine("sqlite:///:memory:")) is None
    assert in_place_url(create_engine("postgresql+psycopg://u:p@127.0.0.1/db")) is None


def test_now_writes_in_place_or_says_it_did_not(engine: Engine, tmp_path: Path) -> None:
    runner = SqlRunner(engine)
    holder = engine.raw_connection()
    try:
        assert runner.now(insert, 1)
        holder.execute("BEGIN IMMEDIATE")
        assert not runner.now(insert, 2), "the lock is held elsewhere: not run, not waited for"
        holder.rollback()
    finally:
        holder.close()
        runner.dispose()
    assert rows(engine) == [1]
    elsewhere = SqlRunner(create_engine("sqlite://"))
    assert not elsewhere.now(insert, 3), "an in-memory database is another connection's: never in place"


async def test_writes_in_place_never_checkpoint_the_log_on_the_loop_and_checkpoint_wal_does(
    engine: Engine, tmp_path: Path
) -> None:
    """A checkpoint copies pages into the database file and syncs it: made by a commit in place it would hold the
    loop. The in-place connection leaves the write-ahead log alone; ``checkpoint_wal`` (a worker thread) copies
    it."""
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE blobs (b BLOB)"))
    runner = SqlRunner(engine)
    database = tmp_path / "runner.db"
    try:

        def put(e: Engine) -> None:
            with e.begin() as conn:
                conn.execute(text("INSERT INTO blobs (b) VALUES (randomblob(2048))"))

        for _ in range(1500):  # more pages than SQLite's automatic checkpoint lets the log hold (1000)
            assert runner.now(put)
        before = database.stat().st_size
        await runner.checkpoint_wal()
        after = database.stat().st_size
    finally:
        runner.dispose()
    assert before < 1_000_000, "nothing was copied into the database file by the writes in place"
    assert after > 2_000_000, "the checkpoint copied the log into it"
