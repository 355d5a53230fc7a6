"""Reading a whole topic as it stands, for the command-line tools (``ticketloop sla replay --kafka``,
``ticketloop deadletters``): every committed record from the start up to where each partition ended when the read
began, with its partition and offset. A plain consumer (no group), read committed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from shared.streaming.stopping import stop_consumer

POLL_MS = 1_000  # one fetch wait; the read gives up after timeout_s without any progress
CONNECT_S = 15.0
"""How long reaching the brokers and listing the topic may take before the read gives up (aiokafka's own
request timeout is 40 s, and a host that takes the connection and never answers would be waited out that long)."""


class TopicReadError(ValueError):
    """A topic that cannot be read whole; str() names the topic and what is wrong."""


@dataclass(frozen=True, slots=True)
class StoredRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


async def partitions_of(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # listing first: describing (a metadata request for the topic) would auto-create a missing topic on a
        # broker that allows it, and a mistyped prefix must not leave a stray topic behind
        if topic not in await admin.list_topics():
            raise TopicReadError(f"topic {topic!r} does not exist on {bootstrap}")
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    found = [d for d in described if d.get("topic") == topic and d.get("error_code") == 0]
    if not found:
        raise TopicReadError(f"topic {topic!r} does not exist on {bootstrap}")
    return sorted(p["partition"] for p in found[0]["partitions"])


async def read_all(
    bootstrap: str,
    topic: str,
    *,
    total: Callable[[int], None] | None = None,
    read: Callable[[int], None] | None = None,
    timeout_s: float = 60.0,
) -> list[StoredRecord]:
    """Every committed record of ``topic``, partition by partition in offset order (``total(n)``: how many
    offsets the read spans, told once; ``read(k)``: k more records read, for a progress bar)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, isolation_level="read_committed"
    )
    try:
        try:
            async with asyncio.timeout(CONNECT_S):
                await consumer.start()  # a malformed address is read here (ValueError), not by the constructor
                tps = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
        except TopicReadError:  # the topic is missing: said as it is
            raise
        except (KafkaError, OSError, ValueError, TimeoutError) as exc:
            raise TopicReadError(f"cannot read {topic!r}: Kafka at {bootstrap} {_unreachable(exc)}") from None
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        left = {tp: ends[tp] for tp in tps if ends[tp] > starts[tp]}
        if total is not None:
            total(sum(ends[tp] - starts[tp] for tp in tps))
        found: list[StoredRecord] = []
        at = {tp: starts[tp] for tp in left}
        loop = asyncio.get_running_loop()
        progress_at = loop.time()
        while left:
            batches = await consumer.getmany(*left, timeout_ms=POLL_MS)
            for tp, records in batches.items():
                found.extend(StoredRecord(tp.partition, r.offset, r.key, r.value) for r in records)
                if read is not None:
                    read(len(records))
            # a fetch of aborted records and control markers only returns nothing, yet moves the position on
            moved = False
            for tp in list(left):
                position = await consumer.position(tp)
                moved = moved or position != at[tp]
                at[tp] = position
                if position >= ends[tp]:
                    left.pop(tp)
            if batches or moved:
                progress_at = loop.time()
            elif loop.time() - progress_at > timeout_s:
                raise TopicReadError(f"{topic}: no records within {timeout_s:.0f} s before the end offsets")
        found.sort(key=lambda r: (r.partition, r.offset))
        return found
    finally:
        await stop_consumer(consumer)


def _unreachable(exc: BaseException) -> str:
    """What went wrong reaching the brokers, in words."""
    if isinstance(exc, TimeoutError):
        return f"did not answer within {CONNECT_S:.0f} s"
    if isinstance(exc, ValueError):
        return "is not a bootstrap address (host:port[,host:port])"
    return f"cannot be reached ({type(exc).__name__})"
