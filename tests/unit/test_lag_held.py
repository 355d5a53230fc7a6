"""Consumer lag as the exactly-once driver reports it while a task cannot handle its records: no broker;
aiokafka's own SubscriptionState stands in for the consumer's partition state (what ``known_offsets`` reads),
moved the way aiokafka moves it when ``getmany`` hands records out."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from shared.streaming.driver import Record
from shared.streaming.stream_metrics import LAG, Offsets, StreamMetrics, held_back
from shared.streaming.transactional import Polled, Task, TransactionalDriver, TxConfig

TP = TopicPartition("events", 0)


class Consumer:
    """What StreamMetrics.observe_lag reads of an AIOKafkaConsumer: its subscription state and assignment."""

    def __init__(self) -> None:
        self._subscription = SubscriptionState()
        self._subscription.assign_from_user({TP})

    def assignment(self) -> set[TopicPartition]:
        return set(self._subscription.assigned_partitions())


@dataclass
class Counting:
    tables: tuple[str, ...] = ()
    seen: int = 0

    def process(self, _task: Task, records: list[Record]) -> None:
        self.seen += len(records)

    def punctuate(self, _task: Task, _now: float) -> None:
        return None


def lag(registry: CollectorRegistry) -> dict[str, float]:
    return {s.labels["topic"]: s.value for f in registry.collect() for s in f.samples if s.name == LAG}


def test_a_held_partition_counts_from_its_first_dropped_record() -> None:
    offsets = {("events", 0): Offsets(100, 100, 100), ("events", 1): Offsets(50, 60, 60)}
    held = held_back(offsets, {("events", 0): 0})
    assert held == {("events", 0): Offsets(0, 100, 100), ("events", 1): Offsets(50, 60, 60)}


async def test_a_broken_task_whose_records_are_dropped_is_not_reported_as_caught_up() -> None:
    """A task that cannot be (re)built stays broken; the driver keeps polling and drops its records (to be read
    again after the rebuild seeks back), but getmany has moved the consumer's position past them: the partition is
    100 behind, not caught up. Once its records are handled, it is caught up."""
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry, "router")
    processor = Counting()
    driver = TransactionalDriver(TxConfig("unused:9092", "t.router", ("events",), 1), processor, metrics=metrics)
    driver.tasks[0] = Task(0, driver.changelogs)
    driver.broken.add(0)
    driver.rebuild_after = float("inf")  # the rebuild stays out of these steps
    consumer = Consumer()
    assignment = consumer._subscription.subscription.assignment
    state = assignment.state_value(TP)
    state.seek(0)
    state.highwater, state.lso = 100, 100
    records = [ConsumerRecord("events", 0, i, 0, 0, b"k", b"v", None, 1, 1, []) for i in range(100)]
    state.consumed_to(100)
    await driver.step([Polled({TP: records}, driver.epochs())])
    metrics.observe_lag("t.router", consumer, driver.held)  # as TransactionalDriver.run does after each poll
    assert processor.seen == 0
    assert lag(registry) == {"events": 100}
    driver.broken.discard(0)  # rebuilt: the records are read again and handled
    await driver.step([Polled({TP: records}, driver.epochs())])
    metrics.observe_lag("t.router", consumer, driver.held)
    assert processor.seen == 100 and lag(registry) == {"events": 0}
