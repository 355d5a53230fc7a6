"""The exactly-once driver's pure parts and a task's state: where records go, which partitions make a task, and
the record cache that writes each changed key to its changelog once per transaction. No broker."""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from shared.streaming.driver import Record
from shared.streaming.memory import MemoryBroker
from shared.streaming.transactional import (
    BATCH_BYTES_MAX,
    Send,
    Task,
    by_partition,
    changelog_topic,
    destinations,
    miscounted,
    split_by_topic,
    task_partitions,
    transactional_id,
)


def rec(topic: str, p: int, offset: int, key: bytes = b"k", value: bytes = b"v") -> Record:
    return Record(topic, p, offset, key, value, (), 0)


def test_a_keyed_record_goes_where_a_plain_send_would_put_it_and_an_explicit_partition_is_kept() -> None:
    every = {"t": [0, 1, 2, 3], "c": [0, 1, 2, 3]}
    known: dict[tuple[str, bytes | None], int] = {}
    sends = [Send("t", f"key-{i}".encode(), b"v") for i in range(50)] + [Send("c", b"any", b"v", [], 2)]
    out = destinations(sends, every, known)
    for (topic, p), items in out.items():
        for s in items:
            want = 2 if topic == "c" else DefaultPartitioner()(s.key, [0, 1, 2, 3], [0, 1, 2, 3])
            assert p == want
    assert sum(len(v) for v in out.values()) == 51
    assert len(known) == 50, "a key's partition is remembered"
    assert destinations(sends, every, known) == out, "and the remembered one is the same"


def test_records_keep_their_order_per_destination() -> None:
    sends = [Send("t", b"same", str(i).encode()) for i in range(10)]
    [(_, items)] = destinations(sends, {"t": [0, 1]}, {}).items()
    assert [s.value for s in items] == [str(i).encode() for i in range(10)]


def test_a_task_is_a_partition_number_held_with_every_source_topic() -> None:
    assigned = {("a", 0), ("b", 0), ("a", 1), ("b", 2), ("a", 2)}
    assert task_partitions(assigned, ("a", "b")) == {0, 2}
    assert task_partitions(set(), ("a",)) == set()


def test_records_are_split_by_partition_in_order() -> None:
    records = [rec("a", 0, 0), rec("b", 1, 0), rec("a", 0, 1), rec("b", 0, 5)]
    split = by_partition(records)
    assert [(r.topic, r.offset) for r in split[0]] == [("a", 0), ("a", 1), ("b", 5)]
    assert [r.offset for r in split[1]] == [0]


def test_names_follow_faust_for_changelogs_and_name_the_partition_for_producers() -> None:
    assert changelog_topic("x.router", "tickets") == "x.router-tickets-changelog"
    assert transactional_id("x.router", 3) == "x.router-tx-3"


def test_bytes_state_queues_each_change_for_the_changelog_at_once() -> None:
    task = Task(1, {"t": "t-changelog"})
    task.put("t", b"k", b"v1")
    task.put("t", b"k", b"v2")
    task.delete("t", b"k")
    task.delete("t", b"absent")
    assert [(s.topic, s.key, s.value, s.partition) for s in task.queued] == [
        ("t-changelog", b"k", b"v1", 1),
        ("t-changelog", b"k", b"v2", 1),
        ("t-changelog", b"k", None, 1),
    ]
    assert task.get("t", b"k") is None


def test_the_record_cache_decodes_once_and_writes_each_changed_key_once_at_the_flush() -> None:
    task = Task(0, {"t": "t-changelog"})
    task.tables["t"][b"n"] = b"1"
    task.tables["t"][b"gone"] = b"9"
    decoded: list[bytes] = []

    def dec(raw: bytes) -> int:
        decoded.append(raw)
        return int(raw)

    def enc(value: int) -> bytes:
        return str(value).encode()

    for _ in range(5):
        n = task.load("t", b"n", dec)
        assert n is not None
        task.store("t", b"n", n + 1, enc)
    task.store("t", b"new", 7, enc)
    task.remove("t", b"gone")
    task.remove("t", b"never")
    assert decoded == [b"1"], "decoded once, then read from the cache"
    assert task.queued == [], "nothing written before the flush"
    task.flush()
    assert sorted((s.key, s.value) for s in task.queued) == [(b"gone", None), (b"n", b"6"), (b"new", b"7")]
    assert task.tables["t"] == {b"n": b"6", b"new": b"7"}
    assert task.cache["t"] == {}, "the cache lives one transaction"
    assert task.load("t", b"n", dec) == 6 and decoded == [b"1", b"6"]


def test_bytes_and_objects_see_one_table_and_the_later_change_wins() -> None:
    """A processor that stores a key and then reads or writes it as bytes (or the other way round) in one
    transaction sees one value, and the changelog gets the last one."""
    task = Task(0, {"t": "t-changelog"})
    task.tables["t"][b"a"] = b"1"

    def enc(value: int) -> bytes:
        return str(value).encode()

    task.store("t", b"a", 2, enc)
    assert task.get("t", b"a") == b"2", "a pending store is what a byte read sees"
    task.store("t", b"b", 5, enc)
    task.put("t", b"b", b"50")  # the later change
    assert task.load("t", b"b", int) == 50
    assert task.load("t", b"a", int) == 2
    task.put("t", b"a", b"3")
    assert task.load("t", b"a", int) == 3, "a byte write drops the stale decoded value"
    task.remove("t", b"a")
    assert dict(task.items("t")) == {b"b": b"50"}
    task.store("t", b"c", 9, enc)
    task.delete("t", b"c")
    task.flush()
    assert task.tables["t"] == {b"b": b"50"}
    last: dict[bytes, bytes | None] = {}
    for send in task.queued:
        assert send.key is not None
        last[send.key] = send.value
    assert last == {b"a": None, b"b": b"50"}, "the changelog's last word for each key is the table's"


class Counter:
    """Counts the values of its input per key in a table and sends the running count on."""

    tables: tuple[str, ...] = ("counts",)

    def process(self, task: Task, records: list[Record]) -> None:
        for r in records:
            key = r.key or b""
            n = (task.load("counts", key, int) or 0) + 1
            task.store("counts", key, n, lambda v: str(v).encode())
            task.send("out", key, str(n).encode())

    def punctuate(self, task: Task, now: float) -> None:  # noqa: ARG002 - the protocol's
        task.send("ticks", str(task.partition).encode(), b"tick")


def test_the_memory_broker_runs_a_processor_as_the_driver_does() -> None:
    broker = MemoryBroker(Counter(), inputs=("in",), partitions=3)
    for i in range(30):
        broker.produce("in", f"k{i % 4}".encode(), b"x")
    assert broker.run() == 30
    finals = {r.key: int(r.value or b"0") for r in broker.records("out")}
    assert finals == {b"k0": 8, b"k1": 8, b"k2": 7, b"k3": 7}
    changelog = broker.records("memory-counts-changelog")
    assert len(changelog) == 4, "one changelog record per key per commit, however often it changed"
    broker.punctuate(0.0)
    assert len(broker.records("ticks")) == 3


def test_the_priority_topics_partitions_come_first_and_the_rest_after() -> None:
    assigned = {TopicPartition("events", 1), TopicPartition("grouped", 1), TopicPartition("events", 0)}
    first, rest = split_by_topic(assigned, ("grouped", "commands"))
    assert first == [TopicPartition("grouped", 1)]
    assert rest == [TopicPartition("events", 0), TopicPartition("events", 1)]


def _summed(a: int, b: int) -> int:
    return a + b


def _told(value: int) -> tuple[bytes, list[tuple[str, bytes]]]:
    return str(value).encode(), [("n", b"1")]


def test_records_sent_folded_go_out_once_per_key_at_the_flush_and_a_plain_send_keeps_the_keys_order() -> None:
    task = Task(0, {"t": "t-changelog"})
    for n in (1, 2, 3):
        task.send_folded("out", b"a", n, _summed, _told)
    task.send_folded("out", b"b", 10, _summed, _told)
    task.send("out", b"other", b"x")
    assert [s.key for s in task.queued] == [b"other"], "held until the flush"
    task.send("out", b"b", b"plain")
    assert [(s.key, s.value) for s in task.queued] == [(b"other", b"x"), (b"b", b"10"), (b"b", b"plain")]
    task.send_folded("out", b"b", 4, _summed, _told)
    task.flush()
    assert [(s.key, s.value) for s in task.queued][3:] == [(b"a", b"6"), (b"b", b"4")]
    assert task.queued[3].headers == [("n", b"1")]
    assert task.held == {}


def test_items_sent_batched_go_out_as_one_array_per_partition_at_the_flush_in_order() -> None:
    task = Task(0, {"t": "t-changelog"})
    task.send_batched("hop", 2, b"g1", b'{"n":1}')
    task.send_batched("hop", 3, b"g9", b'{"n":2}')
    task.send_batched("hop", 2, b"g2", b'{"n":3}')
    task.send("other", b"k", b"x")
    assert [s.topic for s in task.queued] == ["other"], "held until the flush (or a plain send to the same topic)"
    task.flush()
    assert [(s.key, s.value, s.partition) for s in task.queued[1:]] == [
        (b"g1", b'[{"n":1},{"n":3}]', 2),
        (b"g9", b'[{"n":2}]', 3),
    ], "keyed by its first item, on the partition given, the items in the order sent"
    assert task.batches == {}


def test_a_plain_send_to_the_topic_lets_the_batches_go_first_and_a_full_batch_goes_at_once() -> None:
    task = Task(0, {"t": "t-changelog"})
    task.send_batched("hop", 1, b"a", b"1")
    task.send("hop", b"b", b"2")
    assert [(s.value, s.partition) for s in task.queued] == [(b"[1]", 1), (b"2", None)], "a topic keeps its order"
    big = b'"' + b"x" * (BATCH_BYTES_MAX // 2) + b'"'
    for _ in range(3):
        task.send_batched("hop", 1, b"a", big)
    assert len(task.queued) == 4, "no two big items fit in one record: each went alone as the next came"
    task.flush()
    assert [len(s.value or b"") for s in task.queued[2:]] == [len(big) + 2] * 3
    assert all(len(s.value or b"") <= BATCH_BYTES_MAX for s in task.queued)


def test_a_record_folded_another_way_releases_the_held_one_first() -> None:
    task = Task(0, {"t": "t-changelog"})
    task.send_folded("out", b"a", 2, _summed, _told)
    task.send_folded("out", b"a", 3, max, _told)
    task.send_folded("out", b"a", 1, max, _told)
    task.flush()
    assert [s.value for s in task.queued] == [b"2", b"3"]


def test_a_source_topic_is_miscounted_when_its_known_partition_count_is_not_the_configured_one() -> None:
    found = {"a": {0, 1, 2, 3}, "b": {0, 1}, "c": None}
    assert miscounted(found, 4) == {"b": 2}
    assert miscounted({"a": {0, 1, 2, 3}}, 4) == {}
