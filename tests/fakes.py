"""Fakes for unit tests only (integration and e2e tests use the real parts)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from services.intake.api import create_app
from services.intake.config import IntakeConfig
from services.intake.edge import IntakeDeps
from services.intake.publisher import PublishUnavailableError, Record
from services.notifier.channels.base import DeliveryError, Message
from shared.store import db
from shared.streaming.topics import Topics


class FakePublisher:
    """Records what would be produced; ``down=True`` behaves like a broker that does not acknowledge."""

    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.records: list[Record] = []

    @property
    def ready(self) -> bool:
        return not self.down

    async def check(self) -> bool:
        return not self.down

    async def publish(self, records: Sequence[Record]) -> None:
        if self.down:
            raise PublishUnavailableError("fake broker is down")
        self.records.extend(records)


class FakeChannel:
    """Fails with the given errors first, then succeeds; a target in ``down`` fails (retryable) until removed.
    Remembers every attempt and every message delivered."""

    kind = "fake"

    def __init__(self, failures: Sequence[DeliveryError] = ()) -> None:
        self.failures = list(failures)
        self.down: set[str] = set()
        self.attempts: list[tuple[Message, str]] = []
        self.delivered: list[tuple[Message, str]] = []

    async def send(self, message: Message, target: str) -> None:
        self.attempts.append((message, target))
        if target in self.down:
            raise DeliveryError(f"fake {target}: HTTP 503")
        if self.failures:
            raise self.failures.pop(0)
        self.delivered.append((message, target))


@contextlib.contextmanager
def fake_intake(tmp_path: Path, integrations: list[dict[str, Any]]) -> Iterator[tuple[TestClient, FakePublisher]]:
    """intake's app with these integrations (as intake.yaml lists them), over a FakePublisher and a SQLite read
    model in ``tmp_path``: its test client, and the publisher that holds what it would have produced."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'intake.db'}")
    db.init_db(engine)
    config = IntakeConfig.model_validate({"integrations": integrations})
    publisher = FakePublisher()
    app = create_app(IntakeDeps(config, publisher, engine, Topics("t.", 2), CollectorRegistry()))
    with TestClient(app) as client:
        yield client, publisher
