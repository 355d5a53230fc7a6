"""The runtime of a service built on the driver: its timer outlives a fault and ends with the service."""

from __future__ import annotations

import asyncio
import gc
import weakref

from shared.streaming.runtime import every, settle_heap


async def test_a_timer_goes_on_after_a_fault_and_ends_when_the_service_stops() -> None:
    stop = asyncio.Event()
    calls: list[int] = []
    third = asyncio.Event()

    async def tick() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("a fault in the first round")
        if len(calls) == 3:
            third.set()

    task = asyncio.create_task(every(0.001, tick, stop, "test"))
    await asyncio.wait_for(third.wait(), 10)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert len(calls) >= 3, "the rounds after the fault still came"
    assert task.done() and task.exception() is None


async def test_a_timer_stopped_before_its_first_round_never_calls() -> None:
    stop = asyncio.Event()
    stop.set()
    called = False

    async def tick() -> None:
        nonlocal called
        called = True

    await asyncio.wait_for(every(60.0, tick, stop, "test"), 10)
    assert not called


def test_settling_the_heap_sets_start_up_aside_and_collects_what_is_garbage() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector frees it

    gc.collect()
    freed = weakref.WeakSet([Node()])
    kept = Node()
    try:
        set_aside = settle_heap()
        assert set_aside == gc.get_freeze_count() > 0
        assert len(freed) == 0, "garbage at start-up is collected, not frozen with the rest"
        assert all(kept is not o for o in gc.get_objects()), "what lives is out of the collector's walk"
    finally:
        gc.unfreeze()
    assert any(kept is o for o in gc.get_objects())
