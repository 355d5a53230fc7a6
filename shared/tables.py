"""An in-memory, changelog-backed faust table whose recovery reads the changelog with a plain consumer.

faust recovers an in-memory table by running every changelog record through its stream machinery (an Event per
record, recovery buffers, per-record bookkeeping): measured on an sla worker holding 200,000 clocks, 38 s for
213,736 records, which a bare aiokafka consumer reads in 1.0 s (bench/sla_timers, one machine). This store reads
the changelog partitions a worker is newly assigned itself, in large fetches, read committed up to the last
stable offset, straight into the table's dict, and then tells faust's recovery it has applied everything up to
there (``persisted_offset``), so faust reads nothing more. With it, 1,013,958 records (1,000,000 clocks) load
in 4.1 s in the restarted worker against the bare consumer's 2.3 s (6.2 s against 3.1 s before cycle collection was
paused for the load).

The order is faust's: a rebalance first starts the transactional producers of the new assignment (which fences a
killed predecessor's producers and ends their open transactions), then the tables load, then recovery runs.
Only raw tables (bytes keys and values, shared.streams.raw_table) use it: their records are stored as they are.
"""

from __future__ import annotations

import gc
import time
from typing import Any

import faust
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.stores.memory import Store as MemoryStore
from faust.types import TP

log = structlog.get_logger("ticketloop.tables")

FETCH_MAX_BYTES = 64 * 1024 * 1024
PARTITION_FETCH_BYTES = 16 * 1024 * 1024


def bootstrap_of(app: Any) -> str:
    return ",".join(f"{url.host}:{url.port or 9092}" for url in app.conf.broker)


class ChangelogStore(MemoryStore[bytes, bytes]):
    """faust's memory store, filled from its changelog by a plain consumer when partitions are assigned."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._applied: dict[TP, int] = {}  # per changelog partition: the last offset held in memory

    def persisted_offset(self, tp: TP) -> int | None:
        return self._applied.get(tp)

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        # faust calls this as each change of ours is acknowledged: a partition kept across a rebalance is
        # then known to be current, and is not read again
        self._applied[tp] = offset

    async def on_rebalance(
        self,
        assigned: set[TP],  # noqa: ARG002 - faust's signature
        revoked: set[TP],
        newly_assigned: set[TP],
        generation_id: int = 0,  # noqa: ARG002 - faust's signature
    ) -> None:
        for tp in revoked:
            self._applied.pop(tp, None)
        topic = self.table.changelog_topic.get_topic_name()
        actives = self.app.assignor.assigned_actives()
        load = sorted(tp for tp in newly_assigned if tp.topic == topic and tp in actives)
        if load:
            await self.load(load)

    async def load(self, tps: list[TP]) -> None:
        """Read ``tps`` from the start to their last stable offset into memory."""
        started = time.monotonic()
        partitions = {tp.partition for tp in tps}
        for key in [k for k, p in self._key_partition.items() if p in partitions]:  # what an earlier hold left
            self.data.pop(key, None)
            del self._key_partition[key]
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_of(self.app),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            fetch_max_bytes=FETCH_MAX_BYTES,
            max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
        )
        await consumer.start()
        records = 0
        parts = [TopicPartition(tp.topic, tp.partition) for tp in tps]
        # No cycle collection while loading: each fetch makes up to 100,000 record objects that live until they
        # are applied, so the collector keeps running full passes over the worker's whole heap for nothing (the
        # stored keys and values are bytes, which it never tracks). Measured on 1,000,000 records in a process
        # with the sla service imported: 3.9-4.2 s with it, 3.0 s without (three runs each).
        collecting = gc.isenabled()
        gc.disable()
        try:
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends: dict[TopicPartition, int] = await consumer.end_offsets(parts)
            left = {tp for tp in parts if ends[tp] > 0}
            data, where = self.data, self._key_partition
            while left:
                batch = await consumer.getmany(*left, timeout_ms=1000, max_records=100_000)
                for tp, messages in batch.items():
                    partition = tp.partition
                    for m in messages:
                        if m.offset >= ends[tp]:
                            break
                        if m.value is None:  # a tombstone: the key was deleted
                            data.pop(m.key, None)
                            where.pop(m.key, None)
                        else:
                            data[m.key] = m.value
                            where[m.key] = partition
                    records += len(messages)
                for tp in list(left):
                    if await consumer.position(tp) >= ends[tp]:
                        left.discard(tp)
            for tp in parts:
                self._applied[TP(tp.topic, tp.partition)] = ends[tp] - 1  # faust's convention: the last applied
        finally:
            if collecting:
                gc.enable()
            await consumer.stop()
        log.info(
            "table_loaded",
            table=self.table.name,
            partitions=len(tps),
            records=records,
            keys=len(self.data),
            seconds=round(time.monotonic() - started, 3),
        )


class ChangelogTable(faust.Table[bytes, bytes]):
    """A faust Table stored in a ChangelogStore."""

    def _new_store(self) -> ChangelogStore:
        return ChangelogStore(
            "memory://",
            self.app,
            self,
            table_name=self.name,
            key_type=self.key_type,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            value_type=self.value_type,
            loop=self.loop,
            options=self.options,
        )
