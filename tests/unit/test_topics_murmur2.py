"""shared.streaming.topics.murmur2 against aiokafka's (the Java client's): the same hash, so a key lands on the
partition a plain keyed send would pick."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.streaming.topics import murmur2, partition_of


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=400))
def test_murmur2_is_aiokafkas(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)


def test_murmur2_of_every_length_and_tail() -> None:
    for n in range(300):
        data = bytes((i * 37 + n) % 256 for i in range(n))
        assert murmur2(data) == aiokafka_murmur2(data), n


@settings(deadline=None)
@given(key=st.text(max_size=80), partitions=st.integers(1, 64))
def test_a_key_lands_where_aiokafkas_default_partitioner_puts_it(key: str, partitions: int) -> None:
    every = list(range(partitions))
    assert partition_of(key.encode(), partitions) == DefaultPartitioner()(key.encode(), every, every)
