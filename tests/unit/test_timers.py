"""The sla timer index (pure): a two-level timing wheel over due times kept where the clocks are stored."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.sla.timers import TimerIndex, to_ts
from tests.unit.factories import T0

S = timedelta(seconds=1)


class Store:
    """Clocks' due times by key, and the index over them: what the sla agent keeps."""

    def __init__(self, slot_s: float = 60.0) -> None:
        self.due: dict[str, float] = {}
        self.index = TimerIndex[str](self.due.get, slot_s=slot_s)

    def put(self, key: str, due: datetime | None) -> None:
        was = self.due.get(key)
        if due is None:
            self.due.pop(key, None)
        else:
            self.due[key] = due.timestamp()
        self.index.set_ts(key, to_ts(due), was=was)


def test_pops_what_is_due_earliest_first_and_nothing_else() -> None:
    s = Store()
    s.put("b", T0 + 2 * S)
    s.put("a", T0 + S)
    s.put("c", T0 + 10 * S)
    assert s.index.pop_due(T0) == []
    assert s.index.pop_due(T0 + 5 * S) == ["a", "b"]
    assert s.index.next_due() == T0 + 10 * S


def test_a_popped_key_leaves_until_it_is_set_again() -> None:
    s = Store()
    s.put("a", T0 + S)
    assert s.index.pop_due(T0 + S) == ["a"]
    assert s.index.pop_due(T0 + 5 * S) == [], "its stored due time is still past, but it was taken"
    s.put("a", T0 + S)  # e.g. its proposal could not be sent: armed again for the same time
    assert s.index.pop_due(T0 + 5 * S) == ["a"]


def test_moving_or_clearing_a_due_time_leaves_no_ghost() -> None:
    s = Store()
    s.put("a", T0 + S)
    s.put("a", T0 + 5 * S)
    assert s.index.pop_due(T0 + 2 * S) == [], "the old entry is skipped"
    s.put("b", T0 + S)
    s.put("b", None)
    assert s.index.pop_due(T0 + 10 * S) == ["a"]
    assert s.index.next_due() is None


def test_a_key_moved_away_and_back_pops_once() -> None:
    s = Store()
    s.put("a", T0 + S)
    s.put("a", T0 + 500 * S)
    s.put("a", T0 + S)
    assert s.index.pop_due(T0 + 1000 * S) == ["a"]
    assert s.index.next_due() is None


def test_rebuild_indexes_exactly_what_it_is_given() -> None:
    s = Store()
    s.put("gone", T0)
    s.due.clear()
    s.due["a"] = (T0 + S).timestamp()
    s.index.rebuild([("a", s.due["a"]), ("nothing-due", None)])
    assert s.index.pop_due(T0 + S) == ["a"]


def test_a_rebuild_from_columns_skips_what_has_nothing_due_and_counts_the_rest() -> None:
    s = Store()
    s.put("old", T0)
    s.due.clear()
    near, far = (T0 + S).timestamp(), (T0 + 3600 * S).timestamp()
    s.due.update({"near": near, "far": far})
    s.index.pop_due(T0)  # the index knows what is near: a rebuild puts such clocks in the heap
    assert s.index.rebuild_columns(["far", "paused", "near"], [far, math.nan, near]) == 2
    assert s.index.pop_due(T0 + 10 * S) == ["near"]
    assert s.index.pop_due(T0 + 4000 * S) == ["far"]
    assert s.index.next_due() is None


def test_stale_entries_are_compacted() -> None:
    s = Store()
    for i in range(5000):
        s.put("a", T0 + i * S)
    assert s.index._entries <= 1024 + 2
    assert s.index.pop_due(T0 + 10_000 * S) == ["a"]


def test_far_clocks_wait_in_slots_and_come_near_in_time() -> None:
    s = Store(slot_s=60)
    s.put("soon", T0 + 5 * S)
    s.put("later", T0 + 3600 * S)
    s.put("tomorrow", T0 + 86400 * S)
    assert s.index.pop_due(T0) == []
    assert len(s.index._near) == 1, "only what is due within a slot's width is in the heap"
    assert s.index.next_due() == T0 + 5 * S
    assert s.index.pop_due(T0 + 5 * S) == ["soon"]
    hour = s.index.next_due()
    assert hour is not None and T0 < hour <= T0 + 3600 * S, "a lower bound while the clock waits in its slot"
    assert s.index.pop_due(T0 + 3599 * S) == []
    assert s.index.next_due() == T0 + 3600 * S, "exact once its slot came near"
    assert s.index.pop_due(T0 + 86400 * S) == ["later", "tomorrow"]


def test_a_clock_set_into_a_slot_already_near_is_not_missed() -> None:
    s = Store(slot_s=60)
    s.put("a", T0 + 30 * S)
    assert s.index.pop_due(T0) == []  # the slots up to T0 + 60 s are near now
    s.put("b", T0 + 10 * S)
    s.put("a", T0 + 90 * S)
    assert s.index.pop_due(T0 + 45 * S) == ["b"]
    assert s.index.pop_due(T0 + 90 * S) == ["a"]


@given(
    st.lists(st.tuples(st.sampled_from("abcdefgh"), st.one_of(st.none(), st.integers(0, 100))), max_size=60),
    st.integers(0, 100),
)
def test_it_agrees_with_a_plain_dict(ops: list[tuple[str, int | None]], now_s: int) -> None:
    s = Store(slot_s=7)
    for key, at in ops:
        s.put(key, None if at is None else T0 + at * S)
    now = T0 + now_s * S
    expected = sorted((d, k) for k, d in s.due.items() if d <= now.timestamp())
    assert s.index.pop_due(now) == [k for _, k in expected]


ops_and_times = st.lists(
    st.tuples(
        st.sampled_from("abcdefgh"),
        st.one_of(st.none(), st.floats(0, 1000, allow_nan=False)),
        st.floats(0, 50, allow_nan=False),  # how far the clock moves on before this set
    ),
    max_size=80,
)


@given(ops_and_times, st.sampled_from([0.5, 7.0, 60.0]))
def test_a_timer_loop_on_it_fires_each_key_at_its_time_in_order(
    ops: list[tuple[str, float | None, float]], slot: float
) -> None:
    """What the sla timer loop does: pop what is due as the clock moves on, sleep until next_due() (never past
    a real due time), and a fired clock has nothing due until it is set again. Every key is popped once, not
    before its due time, earliest first, and none is missed."""
    s = Store(slot_s=slot)
    now = T0

    def run_until(end: datetime) -> None:
        nonlocal now
        while True:
            popped = s.index.pop_due(now)
            batch = [(s.due[key], key) for key in popped]
            assert all(due <= now.timestamp() for due, _ in batch), "never before its due time"
            assert batch == sorted(batch), "earliest first"
            for key in popped:
                s.put(key, None)  # fired: nothing more due on it
            assert not [d for d in s.due.values() if d <= now.timestamp()], "nothing due is left behind"
            nxt = s.index.next_due()
            if nxt is None:
                assert not s.due
                now = end
                return
            assert nxt.timestamp() <= min(s.due.values()), "next_due is never later than the earliest due time"
            assert nxt > now, "after popping what is due at now, the loop has something later to sleep until"
            if nxt > end:
                now = end
                return
            now = max(now, nxt)

    for key, at, step in ops:
        run_until(now + step * S)
        s.put(key, None if at is None else T0 + timedelta(seconds=at))
    run_until(T0 + 2000 * S)
    assert not s.due
    assert s.index._entries == s.index._stale == 0 or s.index.next_due() is None
