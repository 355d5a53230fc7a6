"""Thin helpers for faust agents: raw-bytes topics, acknowledged sends, and the dead-letter path."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import faust
from faust.types import EventT, TopicT
from faust.types.tuples import RecordMetadata
from pydantic import BaseModel

from shared.infra.logging import get_logger
from shared.streaming.codec import DecodeError, decode, encode
from shared.streaming.deadletters import dead_letter
from shared.streaming.snapshots import SnapshotPolicy
from shared.streaming.tables import ChangelogTable

M = TypeVar("M", bound=BaseModel)

log = get_logger(__name__)


def raw_topic(app: faust.App, *names: str, internal: bool = False, partitions: int | None = None) -> TopicT:
    """A topic whose keys are UTF-8 strings and whose values are raw bytes (decoded by shared.streaming.codec)."""
    return app.topic(
        *names,
        key_type=str,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        internal=internal,
        partitions=partitions,
    )


def raw_table(
    app: faust.App,
    name: str,
    *,
    partitions: int,
    consumer_recovery: bool = False,
    snapshots: SnapshotPolicy | None = None,
) -> Any:
    """A changelog-backed table of bytes keys to bytes values (values are codec-encoded models).

    Changed only while handling an event: faust writes the change to the changelog partition of that event's
    source partition (the tables are co-partitioned with their inputs), so under exactly_once the change commits
    in the same transaction as the event's offset. (``use_partitioner`` would let the producer's partitioner
    pick it instead, which is right only while the producer's metadata agrees; nothing needs it.)
    """
    if (
        consumer_recovery
    ):  # recovered by a plain consumer, not record by record through faust (shared/streaming/tables.py)
        table = ChangelogTable(
            app,
            snapshots=snapshots,
            name=name,
            beacon=app.beacon,
            key_type=bytes,
            value_type=bytes,
            partitions=partitions,
        )
        return app.tables.add(table)
    if snapshots is not None:
        raise ValueError(f"table {name}: snapshots need consumer_recovery")
    return app.Table(name, key_type=bytes, value_type=bytes, partitions=partitions)


async def emit(topic: TopicT, key: str, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> None:
    """Send as part of the event being handled: published, and acknowledged by the broker, before the event's
    offset is committed (the app sets stream_publish_on_commit), so a crash replays the event, never loses it."""
    await topic.send(key=key, value=value, headers=headers or [])


async def send(
    topic: TopicT, key: str, value: bytes, headers: list[tuple[str, bytes]] | None = None
) -> Awaitable[RecordMetadata]:
    """Send outside any event (a timer); await the result to know the broker acknowledged it (many sends can
    be awaited together: one round trip for a burst)."""
    fut: Awaitable[RecordMetadata] = await topic.send(key=key, value=value, headers=headers or [])
    return fut


async def send_acked(topic: TopicT, key: str, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> None:
    """Send outside any event (a timer) and wait until the broker acknowledged it."""
    await (await send(topic, key, value, headers))


async def decode_or_deadletter(model: type[M], event: EventT[Any], deadletter: TopicT, service: str) -> M | None:
    """The event's value as ``model``; a poison message goes to deadletter with the reason and gives None."""
    try:
        return decode(model, event.value)
    except DecodeError as exc:
        await to_deadletter(deadletter, service, event, str(exc))
        return None


async def to_deadletter(deadletter: TopicT, service: str, event: EventT[Any], reason: str) -> None:
    msg = event.message
    key = msg.key if isinstance(msg.key, bytes) else (str(msg.key).encode() if msg.key is not None else None)
    value = msg.value if isinstance(msg.value, bytes) else str(msg.value).encode()
    dl = dead_letter(
        service=service,
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=key,
        value=value,
        reason=reason,
    )
    log.warning("dead_lettered", topic=msg.topic, partition=msg.partition, offset=msg.offset, reason=reason)
    await emit(deadletter, msg.topic, encode(dl))
