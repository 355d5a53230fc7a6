"""The notifier's journal of finished sends (shared/store/journal.py) and the writer that uses it: a send's
outcome is durable at once, the database gets it in a round, a journal file goes once it is all in the
database, and what a killed notifier journaled reaches the database at the next start."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, make_url

from services.notifier.lanes import Dispatcher, Writer
from services.notifier.main import build as build_notifier
from shared.events import Delivery
from shared.infra.settings import NotifierSettings
from shared.store import journal, outbox
from shared.store.journal import Journal, decode, encode, journal_dir
from shared.store.outbox import Finish
from shared.store.runner import SqlRunner
from tests.fakes import FakeChannel
from tests.unit.test_lanes import GatedRounds, Sinks, deps, items, until


def delivery(nid: str, status: str = "sent") -> Delivery:
    return Delivery(
        notification_id=nid,
        ticket_id="tl-1",
        kind="assigned",
        channel="fake",
        recipient="t",
        status=status,
        attempts=1,
        at=datetime(2026, 12, 5, 4, 0, tzinfo=UTC),
    )


def finish(*nids: str) -> Finish:
    return Finish(list(nids), [delivery(n) for n in nids])


def sent_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT notification_id FROM deliveries WHERE status = 'sent'").all()
    return {r[0] for r in rows}


def journaled_by_a_killed_notifier(directory: Path, *nids: str) -> None:
    """What a notifier killed after journaling these sends (and before its round) leaves behind."""
    killed = Journal(directory)
    killed.append(finish(*nids))
    killed.close()  # its process died: the lock goes with it, the file stays


def journal_files(engine: Engine) -> list[Path]:
    directory = journal_dir(engine.url)
    assert directory is not None
    return sorted(directory.glob("*.journal")) if directory.is_dir() else []


def test_a_finish_survives_its_line_and_a_line_cut_short_is_no_finish() -> None:
    one, two = finish("a", "b"), finish("c")
    data = encode(one) + encode(two)
    assert decode(data) == [one, two]
    assert decode(data + encode(finish("d"))[:-5]) == [one, two]  # the crash cut the last write short
    assert decode(encode(one) + b'{"ids": 1}\n' + b"not json\n" + encode(two)) == [one, two]


def test_the_journal_lives_beside_a_sqlite_file_and_nowhere_for_another_database(tmp_path: Path) -> None:
    assert journal_dir(make_url(f"sqlite:///{tmp_path / 'tl.db'}")) == tmp_path / "tl.db.journal"
    assert journal_dir(make_url("sqlite://")) is None
    assert journal_dir(make_url("sqlite:///:memory:")) is None
    assert journal_dir(make_url("postgresql+psycopg://u:p@db/ticketloop")) is None


def test_a_live_processs_files_are_never_recovered_and_a_gone_ones_are(tmp_path: Path) -> None:
    live, gone = Journal(tmp_path / "j"), Journal(tmp_path / "j")
    live.append(finish("live-1"))
    gone.append(finish("gone-1"))
    gone.append(finish("gone-2"))
    gone.close()  # its process died: the lock is gone with it, the file stays
    starting = Journal(tmp_path / "j")
    found = starting.recover()
    assert [op for _, _, ops in found for op in ops] == [finish("gone-1"), finish("gone-2")]
    assert starting.recover() == []  # taken: a second notifier starting at the same time leaves it
    Journal.forget(found)
    assert [p.name.split("-")[0] for p in (tmp_path / "j").glob("*.journal")] == [live.token]
    live.close()


def test_a_generation_goes_once_everything_in_it_is_written(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j")
    first = j.append(finish("a"))
    j.applied(first, all_of_it=False)  # finishes after it may not be written: the file holds them
    assert len(list((tmp_path / "j").glob("*.journal"))) == 1
    j.applied(first, all_of_it=True)
    assert list((tmp_path / "j").glob("*.journal")) == []
    second = j.append(finish("b"))  # sealed: a new file
    assert second == first + 1
    j.append(finish("c"))
    j.applied(second + 1, all_of_it=True)  # a later generation applied whole: every earlier one goes too
    assert list((tmp_path / "j").glob("*.journal")) == []
    j.close()


async def test_a_journaled_outcome_lets_the_lane_send_again_before_the_database_has_it(engine: Engine) -> None:
    """The rounds held: both sends go (each outcome journaled at once), the database has neither; released,
    it has both, the journal file is gone, and the consumer's commit (a barrier) waited for the database."""
    gate = asyncio.Event()
    channel, sinks = FakeChannel(), Sinks()
    dispatcher = Dispatcher(
        deps(engine, channel, sinks, sql=GatedRounds(engine, gate), journal=journal.journal_for(engine))
    )
    try:
        dispatcher.submit(items("t", 2), saved=False)
        await until("both sends", lambda: len(channel.delivered) == 2)
        assert sent_ids(engine) == set()
        assert len(journal_files(engine)) == 1
        commit = dispatcher.checkpoint()
        for _ in range(20):
            await asyncio.sleep(0)
        assert not commit.done()
        gate.set()
        await asyncio.wait_for(commit, timeout=20)
        assert sent_ids(engine) == {"t-0", "t-1"}
        await until("the journal file gone", lambda: journal_files(engine) == [])
        assert [r.notification_id for r in sinks.records] == ["t-0", "t-1"]
    finally:
        gate.set()
        await dispatcher.stop()


async def test_what_a_killed_notifier_journaled_is_written_before_the_next_one_starts(engine: Engine) -> None:
    """Saved, sent and journaled, never written (the process killed between): the next start writes it, so
    the outbox row is gone and the delivery log says sent; nothing is sent again."""
    held = items("t", 1)
    outbox.add(engine, held)
    directory = journal_dir(engine.url)
    assert directory is not None
    journaled_by_a_killed_notifier(directory, "t-0")
    channel, sinks = FakeChannel(), Sinks()
    writer = Writer(deps(engine, channel, sinks, journal=Journal(directory)))
    assert await writer.recover() == 1
    assert sent_ids(engine) == {"t-0"}
    assert outbox.pending(engine, [("tickets", 0)]) == []
    assert journal_files(engine) == []
    await writer.stop()


async def test_a_recovery_the_database_refuses_keeps_the_journal_for_the_next_start(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = journal_dir(engine.url)
    assert directory is not None
    journaled_by_a_killed_notifier(directory, "t-0")

    def refuse(*_args: object) -> None:
        raise RuntimeError("database is gone")

    monkeypatch.setattr(outbox, "write", refuse)
    writer = Writer(deps(engine, FakeChannel(), Sinks(), journal=Journal(directory)))
    with pytest.raises(RuntimeError):
        await writer.recover()
    assert len(journal_files(engine)) == 1
    monkeypatch.undo()
    again = Writer(deps(engine, FakeChannel(), Sinks(), journal=Journal(directory)))
    assert await again.recover() == 1
    assert sent_ids(engine) == {"t-0"}


async def test_without_a_journal_the_writer_writes_in_place_as_before(engine: Engine) -> None:
    calls: list[str] = []

    class Counted(SqlRunner):
        def now(self, fn: Callable[..., object], *args: object, **kwargs: object) -> bool:
            calls.append("now")
            return super().now(fn, *args, **kwargs)

    writer = Writer(deps(engine, FakeChannel(), Sinks(), sql=Counted(engine)))
    await writer.finish(["t-0"], [delivery("t-0")])
    assert calls == ["now"]
    assert sent_ids(engine) == {"t-0"}
    assert await writer.recover() == 0
    await writer.stop()


def test_the_notifier_journals_beside_its_sqlite_file_or_where_it_is_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'tl.db'}")
    beside = build_notifier(NotifierSettings(), CollectorRegistry()).dispatcher.writer.journal
    assert beside is not None
    assert beside.directory == tmp_path / "tl.db.journal"
    monkeypatch.setenv("TICKETLOOP_NOTIFIER_JOURNAL_DIR", str(tmp_path / "volume"))
    told = build_notifier(NotifierSettings(), CollectorRegistry()).dispatcher.writer.journal
    assert told is not None
    assert told.directory == tmp_path / "volume"


async def test_a_journal_that_cannot_be_written_makes_the_lane_wait_for_the_database(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = journal_dir(engine.url)
    assert directory is not None
    full = Journal(directory)

    def no_space(_op: Finish) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(full, "append", no_space)
    writer = Writer(deps(engine, FakeChannel(), Sinks(), journal=full))
    done = writer.finish(["t-0"], [delivery("t-0")])
    assert not done.done()  # not durable yet: the lane must not send again
    await asyncio.wait_for(done, timeout=20)
    assert sent_ids(engine) == {"t-0"}
    await writer.stop()


def test_a_write_torn_by_a_full_disk_costs_no_later_finish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills mid-line: the line is torn, the finish goes to the database instead (the writer's way), and
    the finishes journaled after it are still whole at the next start."""
    j = Journal(tmp_path / "j")
    j.append(finish("a"))
    real_write = os.write

    def torn(fd: int, data: bytes) -> int:
        real_write(fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("shared.store.journal.os.write", torn)
    with pytest.raises(OSError, match="No space left"):
        j.append(finish("b"))
    monkeypatch.undo()
    j.append(finish("c"))
    j.close()
    found = Journal(tmp_path / "j").recover()
    assert sorted(op.ids[0] for _, _, ops in found for op in ops) == ["a", "c"]
    Journal.forget(found)
