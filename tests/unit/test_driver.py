"""The driver's decisions: the order a poll's records are handled in, what to commit, and when."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import TopicPartition

from shared.streaming.driver import Record, commit_due, commit_offsets, records_of


@dataclass
class Polled:
    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes | None = b"v"
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int = 0


def test_a_poll_is_handled_partition_by_partition_each_in_offset_order() -> None:
    polled = {
        TopicPartition("t", 1): [Polled("t", 1, 7), Polled("t", 1, 8)],
        TopicPartition("t", 0): [Polled("t", 0, 3)],
    }
    assert [(r.partition, r.offset) for r in records_of(polled)] == [(0, 3), (1, 7), (1, 8)]


def test_the_offset_committed_is_the_next_one_to_read_per_partition() -> None:
    records = [Record("t", p, o, None, b"", (), 0) for p, o in [(0, 3), (1, 7), (1, 8), (0, 4)]]
    assert commit_offsets(records) == {("t", 0): 5, ("t", 1): 9}
    assert commit_offsets([]) == {}


def test_commits_wait_for_the_interval_while_busy_and_come_at_once_when_idle() -> None:
    assert not commit_due(True, committed_at=10.0, now=10.2, interval_s=0.5)
    assert commit_due(True, committed_at=10.0, now=10.5, interval_s=0.5)
    assert commit_due(False, committed_at=10.0, now=10.1, interval_s=0.5)
