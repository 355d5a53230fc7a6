"""An in-memory driver for a transactional processor: topics as lists, no broker (FastStream's TestKafkaBroker
idea). It runs the same ``Processor`` the production driver runs, with the same tasks, the same partitioning of
what they send (shared.streaming.transactional.destinations) and the same flush at each commit, so a service's
every decision is tested without Kafka; the broker tests keep the guarantees (transactions, fencing, recovery).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from shared.streaming.driver import Record
from shared.streaming.stream_metrics import ReasonKind
from shared.streaming.transactional import Processor, Send, Task, by_partition, changelog_topic, destinations


@dataclass
class MemoryBroker:
    """Topics of ``partitions`` partitions each; ``run`` hands the processor every record not yet handled,
    partition by partition, until nothing new arrives (or ``max_rounds``)."""

    processor: Processor
    inputs: tuple[str, ...]
    partitions: int = 4
    group_id: str = "memory"
    topics: dict[tuple[str, int], list[Record]] = field(default_factory=dict)
    read: dict[tuple[str, int], int] = field(default_factory=dict)
    tasks: dict[int, Task] = field(default_factory=dict)
    known: dict[tuple[str, bytes | None], int] = field(default_factory=dict)
    dead_lettered: Counter[ReasonKind] = field(default_factory=Counter)
    """The kinds of the dead letters committed, as the production driver counts them."""

    def __post_init__(self) -> None:
        changelogs = {name: changelog_topic(self.group_id, name) for name in self.processor.tables}
        self.tasks = {p: Task(p, changelogs) for p in range(self.partitions)}

    def produce(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        self.append([Send(topic, key, value, headers or [])])

    def append(self, sends: list[Send]) -> None:
        every = {s.topic: list(range(self.partitions)) for s in sends}
        for (topic, p), items in destinations(sends, every, self.known).items():
            log = self.topics.setdefault((topic, p), [])
            for s in items:
                log.append(Record(topic, p, len(log), s.key, s.value, tuple(s.headers), 0))

    def records(self, topic: str) -> list[Record]:
        """Everything on ``topic``, partition by partition."""
        return [r for (t, _), log in sorted(self.topics.items()) if t == topic for r in log]

    def run(self, max_rounds: int = 100) -> int:
        """Handle until quiet; how many records were handled."""
        handled = 0
        for _ in range(max_rounds):
            pending: list[Record] = []
            for (topic, p), log in self.topics.items():
                if topic in self.inputs:
                    start = self.read.get((topic, p), 0)
                    pending += log[start:]
                    self.read[(topic, p)] = len(log)
            if not pending:
                return handled
            for p, records in sorted(by_partition(pending).items()):
                self.step(self.tasks[p], records)
            handled += len(pending)
        return handled

    def punctuate(self, now: float) -> None:
        for task in self.tasks.values():
            self.processor.punctuate(task, now)
            self.commit(task)

    def step(self, task: Task, records: list[Record]) -> None:
        self.processor.process(task, records)
        self.commit(task)

    def commit(self, task: Task) -> None:
        task.flush()
        queued, task.queued = task.queued, []
        self.append(queued)
        self.dead_lettered.update(task.dead_lettered)
        task.dead_lettered = []
