"""The sla timer index (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.sla.timers import TimerIndex
from tests.unit.factories import T0

S = timedelta(seconds=1)


def test_pops_what_is_due_earliest_first_and_nothing_else() -> None:
    index = TimerIndex()
    index.set("b", T0 + 2 * S)
    index.set("a", T0 + S)
    index.set("c", T0 + 10 * S)
    assert index.pop_due(T0) == []
    assert index.pop_due(T0 + 5 * S) == ["a", "b"]
    assert len(index) == 1 and index.next_due() == T0 + 10 * S


def test_moving_or_clearing_a_due_time_leaves_no_ghost() -> None:
    index = TimerIndex()
    index.set("a", T0 + S)
    index.set("a", T0 + 5 * S)
    assert index.pop_due(T0 + 2 * S) == [], "the old entry is skipped"
    index.set("b", T0 + S)
    index.set("b", None)
    assert index.pop_due(T0 + 10 * S) == ["a"]
    assert index.next_due() is None and len(index) == 0


def test_rebuild_replaces_everything() -> None:
    index = TimerIndex()
    index.set("gone", T0)
    index.rebuild([("a", T0 + S), ("stopped", None)])
    assert index.pop_due(T0 + S) == ["a"]


def test_stale_entries_are_compacted() -> None:
    index = TimerIndex()
    for i in range(5000):
        index.set("a", T0 + i * S)
    assert len(index._heap) <= 2 * len(index) + 1024
    assert index.pop_due(T0 + 10_000 * S) == ["a"]


@given(
    st.lists(st.tuples(st.sampled_from("abcdefgh"), st.one_of(st.none(), st.integers(0, 100))), max_size=60),
    st.integers(0, 100),
)
def test_it_agrees_with_a_plain_dict(ops: list[tuple[str, int | None]], now_s: int) -> None:
    index, plain = TimerIndex(), dict[str, datetime]()
    for key, at in ops:
        due = None if at is None else T0 + at * S
        index.set(key, due)
        if due is None:
            plain.pop(key, None)
        else:
            plain[key] = due
    now = T0 + now_s * S
    expected = sorted((d, k) for k, d in plain.items() if d <= now)
    assert index.pop_due(now) == [k for _, k in expected]
    assert len(index) == len(plain) - len(expected)
