"""Stopping an aiokafka consumer while its broker is away, without aiokafka's own cancellation escaping.

aiokafka 0.14's ``Fetcher.close`` cancels its fetch tasks and awaits each bare (aio-libs/aiokafka#647): a fetch
that failed and sleeps in its retry backoff (the broker away) then raises ``CancelledError`` out of
``consumer.stop()``, before the consumer's client is closed. Where the stop ran inside a rebalance callback (a
task's changelog loaded after a rejoin) that error ended the group's coordination task, and the worker exited:
router and sla did so after the broker was away for over a minute. ``stop_consumer`` tells that error from a real
cancellation of the caller (``Task.cancelling``), finishes the stop and lets the caller go on.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer

from shared.infra.logging import get_logger

log = get_logger(__name__)


def cancelled_from_inside(task: asyncio.Task[object] | None) -> bool:
    """A ``CancelledError`` caught in ``task`` came from something it awaited, not from a cancel of ``task``."""
    return task is not None and task.cancelling() == 0


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """``consumer.stop()``; a ``CancelledError`` of aiokafka's own making is logged and the stop finished."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        if not cancelled_from_inside(asyncio.current_task()):
            raise
        log.warning("consumer_stop_interrupted_finishing")
        await _finish_stop(consumer)


async def _finish_stop(consumer: AIOKafkaConsumer) -> None:
    """What ``consumer.stop()`` had left when a close inside it raised: the fetcher's tasks (its fetch loop, if
    the group coordinator's close raised before the fetcher's, and its fetches) and the client. Private attributes
    of the pinned aiokafka; the consumer is marked closed, so ``stop()`` would do nothing."""
    fetcher = getattr(consumer, "_fetcher", None)
    tasks = [getattr(fetcher, "_fetch_task", None), *getattr(fetcher, "_pending_tasks", ())]
    left = [t for t in tasks if isinstance(t, asyncio.Task) and not t.done()]
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)
    client = getattr(consumer, "_client", None)
    if client is not None:
        await client.close()
