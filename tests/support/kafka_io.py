"""Small real-broker helpers for tests: produce raw records and read a topic back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord


async def produce(bootstrap: str, topic: str, records: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key.encode()) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_all(
    bootstrap: str,
    topic: str,
    *,
    expect: int = 0,
    within_s: float = 30.0,
    committed_only: bool = False,
    until: Callable[[list[ConsumerRecord]], bool] | None = None,
) -> list[ConsumerRecord]:
    """Every record on ``topic`` from the start; waits (bounded) until at least ``expect`` have arrived, or
    ``until`` holds for what has. ``committed_only`` reads as downstream services do under exactly_once: aborted
    transactions are skipped."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        isolation_level="read_committed" if committed_only else "read_uncommitted",
    )
    await consumer.start()
    out: list[ConsumerRecord] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend(records)
            if (expect and len(out) >= expect) or (until is not None and until(out)):
                break
            if not expect and until is None and not batch and out:
                break
    finally:
        await consumer.stop()
    return out
