"""The notifier's journal on both databases (SQLite and Debian's PostgreSQL): a journaled finish reaches the
database in a round, and what a killed notifier journaled reaches it at the next start, once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, text

from services.notifier.lanes import Writer
from shared.events import Delivery
from shared.store import outbox
from shared.store.journal import Journal
from shared.store.outbox import Finish, OutboxItem
from tests.fakes import FakeChannel
from tests.unit.test_lanes import Sinks, deps, items, until


def record(nid: str) -> Delivery:
    return Delivery(
        notification_id=nid,
        ticket_id="tl-1",
        kind="assigned",
        channel="fake",
        recipient="t",
        status="sent",
        attempts=1,
        at=datetime(2026, 12, 5, 5, 0, tzinfo=UTC),
    )


def sent(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {r[0] for r in conn.execute(text("SELECT notification_id FROM deliveries WHERE status = 'sent'"))}


def pending(engine: Engine, held: list[OutboxItem]) -> set[str]:
    return {i.notification_id for i in outbox.pending(engine, [(held[0].source_topic, held[0].source_partition)])}


async def test_a_journaled_finish_reaches_the_database_in_a_round(engine: Engine, tmp_path: Path) -> None:
    held = outbox.add(engine, items("t", 2))
    writer = Writer(deps(engine, FakeChannel(), Sinks(), journal=Journal(tmp_path / "journal")))
    try:
        done = writer.finish(["t-0"], [record("t-0")])
        assert done.done()  # journaled: the lane may send again at once
        await until("the round", lambda: sent(engine) == {"t-0"})
        assert pending(engine, held) == {"t-1"}
        await until("the journal file gone", lambda: list((tmp_path / "journal").glob("*.journal")) == [])
    finally:
        await writer.stop()


async def test_what_a_killed_notifier_journaled_reaches_the_database_at_the_next_start(
    engine: Engine, tmp_path: Path
) -> None:
    held = outbox.add(engine, items("t", 2))
    killed = Journal(tmp_path / "journal")
    killed.append(Finish(["t-0", "t-1"], [record("t-0"), record("t-1")]))
    killed.close()
    writer = Writer(deps(engine, FakeChannel(), Sinks(), journal=Journal(tmp_path / "journal")))
    assert await writer.recover() == 1
    assert sent(engine) == {"t-0", "t-1"}
    assert pending(engine, held) == set()
    again = Writer(deps(engine, FakeChannel(), Sinks(), journal=Journal(tmp_path / "journal")))
    assert await again.recover() == 0  # taken once
    await writer.stop()
    await again.stop()
