"""When a ChangelogStore may snapshot (no broker: the store is built, not started): only at a commit at a clean event
boundary, and only once every change made before that commit began is committed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import faust

from shared.streaming.snapshots import SnapshotDir, SnapshotPolicy
from shared.streaming.tables import ChangelogStore, ChangelogTable


def a_store(directory: Path) -> ChangelogStore:
    app = faust.App(f"unit-tables-{time.time_ns()}", broker="kafka://127.0.0.1:1")
    store = ChangelogTable(app, name="clocks", key_type=bytes, value_type=bytes, partitions=1).data
    assert isinstance(store, ChangelogStore)
    store.use_snapshots(SnapshotPolicy(directory, interval_s=0), SnapshotDir(directory), None)
    store._held, store._next = {0}, {0: 7}
    store.data[b"a"], store._key_partition[b"a"] = b"1", 0
    return store


def test_no_snapshot_while_a_change_is_uncommitted_or_the_commit_was_not_at_a_boundary(tmp_path: Path) -> None:
    async def run() -> list[bool]:
        store = a_store(tmp_path)
        started: list[bool] = []

        def commit(committed: set[str], settled: bool) -> None:
            store.before_commit()
            store.after_commit(committed, settled)
            started.append(store._writing is not None)

        store._seq = 5
        store._dirty = {"app-0-0": (5, 0)}  # a change in partition 0's transaction
        commit({"app-0-1"}, settled=True)  # another transaction committed: that change is still open
        store._seq = 6
        store._dirty["app-0-0"] = (6, 0)
        store._commit_seq = 5
        store.after_commit({"app-0-0"}, settled=True)  # committed, but a later change (6) came after it began
        started.append(store._writing is not None)
        commit({"app-0-0"}, settled=False)  # committed around a stuck handler
        commit(set(), settled=True)  # now: every change committed, at a clean boundary
        writing = store._writing
        if writing is not None:
            await writing
        return started

    assert asyncio.run(run()) == [False, False, False, True]
    assert [path.name.endswith("-clocks-changelog-0.snap") for path in tmp_path.glob("*.snap")] == [True]


def test_a_snapshot_is_not_rewritten_while_nothing_changed(tmp_path: Path) -> None:
    async def run() -> list[bool]:
        store = a_store(tmp_path)
        started = []
        for _ in range(2):
            store.before_commit()
            store.after_commit(set(), settled=True)
            writing = store._writing
            started.append(writing is not None)
            if writing is not None:
                await writing
        return started

    assert asyncio.run(run()) == [True, False]
    assert len(list(tmp_path.glob("*.snap"))) == 1
