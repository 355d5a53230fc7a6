"""``/readyz`` on the real broker: 200 while Kafka answers, 503 while it is down, 200 again once it is back (the
real publisher probes the broker; being connected once is not being ready)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from deploy.local.kafka_local import LocalKafka
from services.intake.api import create_app
from services.intake.config import IntakeConfig
from services.intake.edge import IntakeDeps
from services.intake.publisher import KafkaPublisher, Record
from shared.store import db
from shared.streaming.topics import Topics, ensure_topics

pytestmark = pytest.mark.timeout(240)


async def status_becomes(client: httpx.AsyncClient, status: int, within_s: float) -> list[int]:
    """The /readyz answers seen until one is ``status`` (bounded: fails after ``within_s``)."""
    seen: list[int] = []
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        seen.append((await client.get("/readyz")).status_code)
        if seen[-1] == status:
            return seen
        await asyncio.sleep(0.2)
    raise AssertionError(f"/readyz never answered {status} within {within_s} s (saw {sorted(set(seen))})")


async def test_readyz_is_503_while_the_broker_is_down_and_200_when_it_answers(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 't.db'}")
    db.init_db(engine)
    config = IntakeConfig.model_validate({"integrations": [], "api_clients": []})
    with LocalKafka() as broker:
        publisher = KafkaPublisher(broker.bootstrap, timeout_s=5)
        await publisher.start()
        app = create_app(IntakeDeps(config, publisher, engine, Topics("r.", 2), CollectorRegistry()))
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
                await status_becomes(client, 200, 60)
                await asyncio.to_thread(broker.halt)
                down = await status_becomes(client, 503, 30)
                assert (await client.get("/readyz")).json()["kafka"] == "unavailable"
                await asyncio.to_thread(broker.resume)
                await status_becomes(client, 200, 90)
        finally:
            await publisher.stop()
    assert down[-1] == 503


async def test_readyz_is_503_until_the_topics_intake_writes_to_exist_with_leaders(tmp_path: Path) -> None:
    """A broker that answers is not enough: a fresh one answers before intake's topics exist or have leaders, and
    a request accepted then would wait out its publish timeout."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 't.db'}")
    db.init_db(engine)
    config = IntakeConfig.model_validate({"integrations": [], "api_clients": []})
    topics = Topics(f"r{time.time_ns()}.", 2)
    with LocalKafka() as broker:
        publisher = KafkaPublisher(broker.bootstrap, timeout_s=5, required=(topics.events.name, topics.commands.name))
        await publisher.start()
        app = create_app(IntakeDeps(config, publisher, engine, topics, CollectorRegistry()))
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
                for _ in range(600):  # connected: the broker answers (bounded: 60 s)
                    if publisher.ready:
                        break
                    await asyncio.sleep(0.1)
                before = await client.get("/readyz")
                await ensure_topics(broker.bootstrap, [topics.events, topics.commands])
                await status_becomes(client, 200, 60)
                await publisher.publish([Record(topics.events.name, "k", b"{}", [])])
        finally:
            await publisher.stop()
    assert before.status_code == 503
    assert before.json()["kafka"] == "unavailable"
