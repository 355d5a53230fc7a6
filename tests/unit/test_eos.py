"""shared/eos.py's waiting parts, with a fake send buffer (the broker-backed behaviour is in
tests/integration/test_eos_broker.py)."""

from __future__ import annotations

import asyncio

from shared.eos import EventBoundary, drain


class SlowBuffer:
    """faust's ProducerBuffer as drain sees it: ``size`` queued, ``message_sent`` set after each hand-over."""

    def __init__(self, queued: int, each_s: float) -> None:
        self.queued = queued
        self.each_s = each_s
        self.message_sent = asyncio.Event()
        self.handed_over = 0

    @property
    def size(self) -> int:
        return self.queued

    async def run(self) -> None:
        while self.queued:
            self.queued -= 1  # faust takes a message off the queue, then sends it
            await asyncio.sleep(self.each_s)
            self.handed_over += 1
            self.message_sent.set()


def test_drain_waits_for_every_queued_message_however_slow_each_send_is() -> None:
    """faust's own flush gives up when one message takes longer than 0.1 s; a commit must not."""

    async def scenario() -> tuple[bool, int]:
        buffer = SlowBuffer(queued=3, each_s=0.15)
        task = asyncio.create_task(buffer.run())
        await asyncio.sleep(0)  # the first message is off the queue and on its way
        in_flight = lambda: 1 if buffer.handed_over < 3 else 0  # noqa: E731
        done = await drain(buffer, in_flight, timeout_s=30)
        await task
        return done, buffer.handed_over

    assert asyncio.run(scenario()) == (True, 3)


def test_drain_gives_up_after_its_timeout_and_says_so() -> None:
    async def scenario() -> bool:
        buffer = SlowBuffer(queued=1, each_s=0)  # nothing ever sends it
        return await drain(buffer, lambda: 0, timeout_s=0.05)

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
