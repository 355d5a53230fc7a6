"""shared/streaming/eos.py's waiting parts, with a fake send buffer (the broker-backed behaviour is in
tests/integration/test_eos_broker.py)."""

from __future__ import annotations

import asyncio

from shared.streaming.eos import BufferWatch, EventBoundary, drain


class Buffer:
    """faust's ProducerBuffer as BufferWatch sees it: ``put`` queues a message's future, resolved once the
    message is published."""

    def __init__(self) -> None:
        self.queue: list[asyncio.Future[None]] = []

    def put(self, fut: asyncio.Future[None]) -> None:
        self.queue.append(fut)

    async def publish_all(self, each_s: float) -> None:
        """faust's buffer task: takes each message off the queue first, then sends it (taking ``each_s``)."""
        while self.queue:
            fut = self.queue.pop(0)
            await asyncio.sleep(each_s)
            fut.set_result(None)


def test_drain_waits_for_every_message_put_until_it_is_published() -> None:
    """Not only until the queue is empty: a message taken off it is still on its way (a commit that looked
    then lost a table change to the next transaction); and however slow one send is (faust's own flush gives
    up after 0.1 s)."""

    async def scenario() -> tuple[bool, int]:
        buffer = Buffer()
        watch = BufferWatch(buffer)
        futs = [asyncio.get_running_loop().create_future() for _ in range(3)]
        for fut in futs:
            buffer.put(fut)
        task = asyncio.create_task(buffer.publish_all(each_s=0.15))
        await asyncio.sleep(0)  # the first message is off the queue and on its way: the queue looks shorter
        assert len(buffer.queue) == 2
        done = await drain(watch, timeout_s=30)
        published = sum(f.done() for f in futs)
        await task
        return done, published

    assert asyncio.run(scenario()) == (True, 3)


def test_drain_gives_up_after_its_timeout_and_says_so() -> None:
    async def scenario() -> bool:
        buffer = Buffer()
        watch = BufferWatch(buffer)
        buffer.put(asyncio.get_running_loop().create_future())  # nothing ever publishes it
        return await drain(watch, timeout_s=0.05)

    assert asyncio.run(scenario()) is False


class Message:
    def __init__(self, tp: str) -> None:
        self.tp = tp
        self.acked = False


def test_a_commit_waits_for_events_let_in_and_holds_new_ones_back() -> None:
    async def scenario() -> list[str]:
        boundary = EventBoundary(settle_timeout_s=30)
        order: list[str] = []
        under_way = Message("t-0")
        await boundary.admit(under_way)

        async def commit() -> None:
            async with boundary.settled(lambda: {"t-0"}):
                order.append("commit")

        async def finish_under_way() -> None:
            await asyncio.sleep(0.05)
            order.append("event 1 done")
            under_way.acked = True
            boundary.acked(under_way)

        async def next_event() -> None:
            await asyncio.sleep(0.01)  # arrives while the commit waits
            await boundary.admit(Message("t-0"))
            order.append("event 2 let in")

        await asyncio.gather(commit(), finish_under_way(), next_event())
        return order

    assert asyncio.run(scenario()) == ["event 1 done", "commit", "event 2 let in"]


def test_a_revoked_partitions_events_do_not_hold_a_commit() -> None:
    async def scenario() -> bool:
        boundary = EventBoundary(settle_timeout_s=30)
        await boundary.admit(Message("revoked-0"))
        async with boundary.settled(lambda: {"t-0"}):
            return boundary.unsettled({"t-0"}) == 0

    assert asyncio.run(scenario())
