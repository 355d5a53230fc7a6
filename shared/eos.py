"""Exactly-once processing on faust: every send made while handling an event joins the transaction of the
partition the event came from.

faust 0.15.3 opens one Kafka transaction per assigned source partition and commits it together with that
partition's consumer offsets. But its TransactionManager picks the transaction for a send by the partition the
message goes *to*. A message re-keyed to another partition (router events to tickets, tickets to the
dedup-key map) then waits in a transaction that only commits when that other partition next commits offsets;
read-committed consumers never see it while nothing else arrives there, and a crash can commit the input without
the output. Kafka Streams ties a task's outputs to its input partition; this does the same:

- a send made while handling an event (current_event) joins the event's source-partition transaction, the one
  committed with that event's offset: outputs, table changes and the offset commit are one atomic unit;
- a table's changelog write queued by faust's send buffer (no current event there) goes to the transaction of
  its own partition, which is the source partition of the event that changed it (tables are co-partitioned);
  the buffer is drained before every commit so it is never a transaction late;
- a send outside any event (a periodic timer) is a plain idempotent send, acknowledged at once; timers only
  propose work (a tick command, a due clock) and the receiving agent decides inside its transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any

from aiokafka.errors import ProducerFenced
from faust import current_event
from faust.transport.consumer import TransactionManager
from faust.types import TP
from faust.types.tuples import RecordMetadata


class SourcePartitionTransactions(TransactionManager):
    """faust's TransactionManager with the transaction chosen by the event being handled (see module doc)."""

    def _group(self, topic: str) -> int:
        # faust's assignor groups co-partitioned topics; an app without tables uses Kafka's round-robin
        # assignor, which has no groups: all its topics are then one group
        groups: Mapping[str, int] = getattr(self.app.assignor, "_topic_groups", {})
        return groups.get(topic, 0)

    def _tid(self, topic: str, partition: int) -> str:
        return f"{self.app.conf.id}-{self._group(topic)}-{partition}"

    def _tps_to_transactional_ids(self, tps: set[TP]) -> set[str]:
        return {self._tid(tp.topic, tp.partition) for tp in tps if not self.app.assignor.is_standby(tp)}

    def transactional_id_for(self, topic: str, partition: int | None) -> str | None:
        event = current_event()
        if event is not None:
            tp = event.message.tp
            return self._tid(tp.topic, tp.partition)
        tables: Any = self.app.tables
        if partition is not None and topic in tables.changelog_topics:
            return self._tid(topic, partition)
        return None

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
        *,
        transactional_id: str | None = None,  # noqa: ARG002 - faust's signature; ours is chosen here
    ) -> Awaitable[RecordMetadata]:
        p = self.consumer.key_partition(topic, key, partition)
        tid = self.transactional_id_for(topic, p)
        producer: Any = self.producer
        return await producer.send(topic, key, value, p, timestamp, headers, transactional_id=tid)  # type: ignore[no-any-return]

    async def commit(self, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
        producer: Any = self.producer
        await producer.buffer.flush()  # changelog writes queued before this commit belong in it
        by_tid: dict[str, dict[TP, int]] = {}
        for tp, offset in offsets.items():
            by_tid.setdefault(self._tid(tp.topic, tp.partition), {})[tp] = offset
        if by_tid:
            try:
                await producer.commit_transactions(
                    by_tid, self.app.conf.id, start_new_transaction=start_new_transaction
                )
            except ProducerFenced as exc:  # another worker took these partitions over: stop, as faust does
                await self.app.crash(exc)
        return True


def install(app: Any) -> None:
    """Use SourcePartitionTransactions for this app's consumer (only consulted under exactly_once)."""
    app.transport.TransactionManager = SourcePartitionTransactions
