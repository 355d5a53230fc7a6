"""The notifier's journal on both databases (SQLite and Debian's PostgreSQL): a journaled finish reaches the
database in a round, and what a killed notifier journaled reaches it at the next start, once."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from services.notifier.lanes import Writer
from shared.store import outbox
from shared.store.journal import Journal
from shared.store.outbox import OutboxItem
from tests.fakes import FakeChannel
from tests.unit.test_journal import delivery, journaled_by_a_killed_notifier, sent_ids
from tests.unit.test_lanes import Sinks, deps, items, until


def pending(engine: Engine, held: list[OutboxItem]) -> set[str]:
    return {i.notification_id for i in outbox.pending(engine, [(held[0].source_topic, held[0].source_partition)])}


async def test_a_journaled_finish_reaches_the_database_in_a_round(engine: Engine, tmp_path: Path) -> None:
    held = outbox.add(engine, items("t", 2))
    writer = Writer(deps(engine, FakeChannel(), Sinks(), journal=Journal(tmp_path / "journal")))
    try:
        done = writer.finish(["t-0"], [delivery("t-0")])
        assert done.done()  # journaled: the lane may send again at once
        await until("the round", lambda: sent_ids(engine) == {"t-0"})
        assert pending(engine, held) == {"t-1"}
        await until("the journal file gone", lambda: list((tmp_path / "journal").glob("*.journal")) == [])
    finally:
        await writer.stop()


async def test_what_a_killed_notifier_journaled_reaches_the_database_at_the_next_start(
    engine: Engine, tmp_path: Path
) -> None:
    held = outbox.add(engine, items("t", 2))
    journaled_by_a_killed_notifier(tmp_path / "journal", "t-0", "t-1")
    writer = Writer(deps(engine, FakeChannel(), Sinks(), journal=Journal(tmp_path / "journal")))
    assert await writer.recover() == 1
    assert sent_ids(engine) == {"t-0", "t-1"}
    assert pending(engine, held) == set()
    again = Writer(deps(engine, FakeChannel(), Sinks(), journal=Journal(tmp_path / "journal")))
    assert await again.recover() == 0  # taken once
    await writer.stop()
    await again.stop()
