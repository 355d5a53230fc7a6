"""Fixtures shared by the notifier's unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from shared.store import db


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A real SQLite database in a file, with every table (the outbox, the delivery log, ...)."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'outbox.db'}")
    db.init_db(engine)
    yield engine
    engine.dispose()
