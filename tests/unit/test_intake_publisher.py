"""Which topics a producer can write to, by one metadata answer (``/readyz``)."""

from __future__ import annotations

from services.intake.publisher import unwritable


def test_topics_with_a_leader_for_every_partition_are_writable() -> None:
    assert unwritable(["e", "c"], {"e": {0, 1}, "c": {0}}, {"e": {0, 1}, "c": {0}}) == []


def test_a_topic_the_answer_lacks_is_not_writable() -> None:
    assert unwritable(["e", "c"], {"e": {0, 1}, "c": None}, {"e": {0, 1}, "c": None}) == ["c"]
    assert unwritable(["e"], {}, {}) == ["e"]


def test_a_partition_without_a_leader_makes_its_topic_not_writable() -> None:
    assert unwritable(["e", "c"], {"e": {0, 1}, "c": {0}}, {"e": {0}, "c": {0}}) == ["e"]


def test_a_topic_with_no_partitions_yet_is_not_writable() -> None:
    assert unwritable(["e"], {"e": set()}, {"e": set()}) == ["e"]


def test_nothing_required_is_writable() -> None:
    assert unwritable([], {}, {}) == []
