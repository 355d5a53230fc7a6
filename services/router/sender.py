"""The producer of the router's watches (risk warnings, handover digests and notes): one idempotent ``acks=all``
producer, started at the first send, shared by the watches and stopped with the router."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from shared.infra.logging import make_headers
from shared.streaming.codec import encode

Send = Callable[[str, str, BaseModel, Sequence[tuple[str, bytes]] | None], Awaitable[None]]
"""(topic, key, record, headers or None for the key as the trace id): sent, acknowledged by the broker when it
returns."""


class KafkaSender:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.producer: AIOKafkaProducer | None = None

    async def __call__(
        self, topic: str, key: str, value: BaseModel, headers: Sequence[tuple[str, bytes]] | None = None
    ) -> None:
        if self.producer is None:
            self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True)
            await self.producer.start()
        sent = list(headers) if headers is not None else make_headers(trace_id=key)
        await self.producer.send_and_wait(topic, encode(value), key=key.encode(), headers=sent)

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None
