"""``ticketloop silence`` against the real API app in process (fake publisher, real SQLite)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from services.cli import main
from services.intake.api import create_app
from services.intake.config import IntakeConfig
from services.intake.edge import IntakeDeps
from shared.infra.config import ConfigWatcher
from shared.rules.oncall import TeamsConfig
from shared.store import db
from shared.streaming.topics import Topics
from tests.fakes import FakePublisher

TOKEN = "api-token-0123456789abcdef"
TEAMS = """
people: {olga: {}, oscar: {}, lena: {}}
teams:
  operations:
    members: [olga, oscar]
    rotation: {every: weekly, handoff: "09:00", time_zone: Asia/Shanghai, start: 2026-11-02}
  leads:
    members: [lena]
"""


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 't.db'}")
    db.init_db(engine)
    config = IntakeConfig.model_validate({"integrations": [], "api_clients": [{"name": "console", "token": TOKEN}]})
    (tmp_path / "teams.yaml").write_text(TEAMS)
    teams = ConfigWatcher(tmp_path / "teams.yaml", TeamsConfig)
    deps = IntakeDeps(config, FakePublisher(), engine, Topics("t.", 2), CollectorRegistry(), teams=teams)
    app = create_app(deps)
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


def test_oncall_show_override_and_remove(http: TestClient) -> None:
    at = "2026-11-24T12:00:00+08:00"
    code, out = run(http, "oncall", "show", "--at", at)
    assert code == 0, out
    assert out.splitlines() == [
        "leads: nobody (the team)",
        "operations: oscar (rotation, until 2026-11-30T09:00:00+08:00)",
    ]
    code, out = run(http, "oncall", "show", "operations", "--at", at)
    assert out.splitlines()[1:3] == [
        "  rotation: oscar  2026-11-23T09:00:00+08:00 -> 2026-11-30T09:00:00+08:00",
        "  rotation: olga  2026-11-30T09:00:00+08:00 -> 2026-12-07T09:00:00+08:00",
    ]
    code, out = run(http, "oncall", "override", "operations", "lena", "--duration", "8h", "--reason", "olga is ill")
    assert code == 0, out
    oid = out.strip()
    code, out = run(http, "oncall", "show")
    assert f"operations: lena (override {oid}, until " in out
    code, out = run(http, "oncall", "show", "operations")
    assert f"override {oid}: lena" in out and "(console: olga is ill)" in out
    code, out = run(http, "oncall", "remove", "operations", oid)
    assert code == 0 and out.strip() == f"removed {oid}: lena for operations"
    assert "operations: lena" not in run(http, "oncall", "show")[1]


def test_oncall_errors_are_clear(http: TestClient) -> None:
    code, out = run(http, "oncall", "override", "operations", "zoe", "--duration", "1h")
    assert code == 1 and "person: 'zoe' is not in people" in out
    code, out = run(http, "oncall", "override", "nope", "olga", "--duration", "1h")
    assert code == 1 and "no team 'nope' in teams.yaml" in out
    code, out = run(http, "oncall", "show", "nope")
    assert code == 1 and "no team 'nope'" in out
    code, out = run(http, "oncall", "remove", "operations", "missing")
    assert code == 1 and "no override 'missing' for team 'operations'" in out
    code, out = run(http, "oncall", "override", "operations", "olga", "--end", "2020-01-01T00:00:00Z")
    assert code == 1 and "ends_at: ends_at is in the past" in out
