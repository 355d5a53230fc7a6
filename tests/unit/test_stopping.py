"""Stopping a consumer whose close raises aiokafka's own CancelledError (aio-libs/aiokafka#647): the stop is finished
and the caller goes on; a cancel of the caller itself still cancels it. The consumer here is a stand-in with the
attributes of aiokafka 0.14's (the e2e test tests/e2e/test_broker_away_long.py runs the real one)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from shared.streaming.stopping import cancelled_from_inside, stop_consumer


class Client:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class Fetcher:
    def __init__(self, pending: set[asyncio.Task[None]], loop_task: asyncio.Task[None] | None = None) -> None:
        self._pending_tasks = pending
        self._fetch_task = loop_task

    async def close(self) -> None:
        """As aiokafka 0.14's: its fetch loop cancelled (and waited for), then each pending fetch cancelled and
        awaited bare."""
        if self._fetch_task is not None:
            self._fetch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._fetch_task
        for task in list(self._pending_tasks):
            task.cancel()
            await task


class Coordinator:
    """A group coordinator whose close re-raises what ended its coordination task."""

    async def close(self) -> None:
        raise asyncio.CancelledError


class Consumer:
    """What ``consumer.stop()`` does in aiokafka 0.14: marked closed, fetcher closed, then the client."""

    def __init__(
        self,
        pending: set[asyncio.Task[None]],
        loop_task: asyncio.Task[None] | None = None,
        coordinator: Coordinator | None = None,
    ) -> None:
        self._closed = False
        self._coordinator = coordinator
        self._fetcher = Fetcher(pending, loop_task)
        self._client = Client()

    async def stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._coordinator is not None:
            await self._coordinator.close()
        await self._fetcher.close()
        await self._client.close()


async def backoff() -> None:
    """A fetch that failed, sleeping before its next try (the broker away)."""
    await asyncio.sleep(3600)


async def started(n: int) -> set[asyncio.Task[None]]:
    tasks = {asyncio.get_running_loop().create_task(backoff()) for _ in range(n)}
    await asyncio.sleep(0)  # each is in its sleep
    return tasks


async def test_the_bare_stop_raises_the_fetchers_cancellation_and_leaves_the_client_open() -> None:
    """The defect the helper is for, as the stand-in models it."""
    consumer = Consumer(await started(2))
    with pytest.raises(asyncio.CancelledError):
        await consumer.stop()
    assert not consumer._client.closed


async def test_a_stop_interrupted_inside_aiokafka_is_finished_and_returns() -> None:
    pending = await started(3)
    consumer: Any = Consumer(pending)
    await stop_consumer(consumer)
    assert consumer._client.closed
    assert all(t.done() for t in pending)


async def test_a_stop_interrupted_before_the_fetcher_closed_ends_its_fetch_loop_too() -> None:
    """The group coordinator's close re-raised what ended its task: the fetcher's close never ran."""
    pending = await started(1)
    (loop_task,) = await started(1)
    consumer: Any = Consumer(pending, loop_task, Coordinator())
    await stop_consumer(consumer)
    assert consumer._client.closed
    assert loop_task.done()
    assert all(t.done() for t in pending)


async def test_a_stop_that_raises_nothing_is_left_as_it_is() -> None:
    consumer: Any = Consumer(set())
    await stop_consumer(consumer)
    assert consumer._client.closed


async def test_a_cancel_of_the_caller_during_the_stop_still_cancels_it() -> None:
    gate = asyncio.Event()

    class Slow(Consumer):
        async def stop(self) -> None:
            gate.set()
            await asyncio.sleep(3600)

    consumer: Any = Slow(set())
    caller = asyncio.get_running_loop().create_task(stop_consumer(consumer))
    await gate.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert caller.cancelled()


async def test_a_cancellation_is_from_inside_only_when_the_task_was_not_cancelled() -> None:
    assert not cancelled_from_inside(None)
    task = asyncio.current_task()
    assert cancelled_from_inside(task)
    assert task is not None
    task.cancel()
    assert not cancelled_from_inside(task)
    task.uncancel()
    with pytest.raises(asyncio.CancelledError):  # the cancel requested above is delivered at the next await
        await asyncio.sleep(0)
