"""The write-ahead log starts over under a steady stream of writes in place (shared/store/runner.py): it grew
without end when every checkpoint ran beside writes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from shared.events import Delivery
from shared.store import db, outbox
from shared.store.runner import SqlRunner, _checkpoint


def delivered(n: int) -> outbox.Finish:
    record = Delivery(
        notification_id=f"n{n:08d}",
        ticket_id=f"tl-{n}",
        kind="assignment",
        channel="webhook",
        recipient="ops-hook",
        status="sent",
        attempts=1,
        error="",
        at=datetime.now(UTC),
    )
    return outbox.Finish([record.notification_id], [record])


async def writes_and_checkpoints(path: Path, restart_frames: int) -> tuple[int, int]:
    """A write in place every loop turn, and a checkpoint after each 30 of them, 12 times; returns the log's
    frames at the end and the commits made."""
    engine = db.make_engine(f"sqlite:///{path}")
    db.init_db(engine)
    runner = SqlRunner(engine, restart_frames=restart_frames)
    stop, every_30 = asyncio.Event(), asyncio.Event()
    written = 0

    async def writes() -> None:
        nonlocal written
        while not stop.is_set():
            if not runner.now(outbox.write, [delivered(written)]):  # held by a checkpoint: the usual way waits
                await runner(outbox.write, [delivered(written)])
            written += 1
            if written % 30 == 0:
                every_30.set()
            await asyncio.sleep(0)

    writer = asyncio.create_task(writes())
    try:
        for _ in range(12):
            every_30.clear()
            await every_30.wait()
            await runner.checkpoint_wal()
    finally:
        stop.set()
        await writer
    frames, _ = _checkpoint(engine)
    runner.dispose()
    engine.dispose()
    return frames, written


async def test_the_log_starts_over_while_writes_keep_coming(tmp_path: Path) -> None:
    """The log's frames at the end are far fewer than the commits made (each commit is at least one frame);
    checkpoints made beside the writes alone (restart_frames too high to ever hold them) leave every commit's
    frames in the log."""
    beside = await writes_and_checkpoints(tmp_path / "beside.db", 10**9)
    assert beside[0] >= beside[1], f"without held writes every commit stays in the log: {beside}"
    held = await writes_and_checkpoints(tmp_path / "held.db", 50)
    assert held[0] < held[1] / 3, f"the log started over: {held}"


async def test_a_read_goes_on_while_a_checkpoint_holds_the_writes_in_place(tmp_path: Path) -> None:
    """A checkpoint that must start the log over holds calls in place while it runs; a read (``read``) adds
    nothing to the log and is not held: the notifier's batches read on while its writer waits."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'read.db'}")
    db.init_db(engine)
    runner = SqlRunner(engine)
    outbox.write(engine, [delivered(1)])
    held = runner._checkpointing = asyncio.Event()  # as checkpoint_wal holds them while it runs
    try:
        write = asyncio.create_task(runner(outbox.write, [delivered(2)]))
        assert await asyncio.wait_for(runner.read(db.was_delivered, "n00000001"), 20) is True
        assert not write.done(), "a write waits for the checkpoint"
        runner._checkpointing = None
        held.set()
        await asyncio.wait_for(write, 20)
    finally:
        runner.dispose()
    assert db.was_delivered(engine, "n00000002")
    engine.dispose()
