from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlmodel import SQLModel

from shared.store import db


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The read model on SQLite and on PostgreSQL (Debian's package, one server for the session: its tables are
    dropped after each test), brought to the newest schema revision as services bring it."""
    sqlite = f"sqlite:///{tmp_path / 'rm.db'}"
    url = sqlite if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))
    eng = db.make_engine(url)
    db.init_db(eng)
    yield eng
    if request.param == "postgresql":
        SQLModel.metadata.drop_all(eng)
        with eng.begin() as conn:  # the schema's version goes with its tables: the next test migrates afresh
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    eng.dispose()
