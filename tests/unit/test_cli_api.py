"""``ticketloop silence`` against the real API app in process (fake publisher, real SQLite)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from services.cli import main
from services.intake.api import IntakeDeps, create_app
from services.intake.config import IntakeConfig
from shared import db
from shared.topics import Topics
from tests.fakes import FakePublisher

TOKEN = "api-token-0123456789abcdef"


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 't.db'}")
    db.init_db(engine)
    config = IntakeConfig.model_validate({"integrations": [], "api_clients": [{"name": "console", "token": TOKEN}]})
    app = create_app(IntakeDeps(config, FakePublisher(), engine, Topics("t.", 2), CollectorRegistry()))
    with TestClient(app) as client:
        yield client


def run(http: TestClient, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main([*argv, "--api-token", TOKEN], out, http), out.getvalue()


def test_silence_add_query_expire(http: TestClient) -> None:
    code, out = run(http, "silence", "add", 'service="db"', 'site=~"bj-.*"', "--duration", "2h", "--comment", "drill")
    assert code == 0, out
    sid = out.strip()
    code, out = run(http, "silence", "query")
    assert code == 0 and sid in out and 'service="db" site=~"bj-.*"' in out and "console: drill" in out
    assert "active" in out
    code, out = run(http, "silence", "expire", sid)
    assert code == 0 and "expired" in out
    assert run(http, "silence", "query")[1] == "", "expired silences are hidden by default"
    assert sid in run(http, "silence", "query", "--state", "expired")[1]


def test_silence_errors_name_the_field(http: TestClient) -> None:
    code, out = run(http, "silence", "add", "service", "--duration", "1h", "--comment", "c")
    assert code == 1
    assert "error: POST /api/v1/silences: invalid silence" in out and "matchers: matchers.0: not a matcher" in out
    code, out = run(http, "silence", "expire", "nope")
    assert code == 1 and "no silence 'nope'" in out
    out_io = io.StringIO()
    assert main(["silence", "query", "--api-token", "wrong"], out_io, http) == 1
    assert "invalid API token" in out_io.getvalue()


def test_an_unreachable_api_is_a_clear_error() -> None:
    out = io.StringIO()
    code = main(["silence", "query", "--api-url", "http://127.0.0.1:9", "--api-token", TOKEN], out)
    assert code == 1 and "cannot reach the API at http://127.0.0.1:9" in out.getvalue()
