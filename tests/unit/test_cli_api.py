"""``ticketloop silence`` against the real API app in process (fake publisher, real SQLite)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
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


def test_a_token_with_a_line_end_is_read_without_it_and_a_token_that_cannot_be_sent_is_not_shown(
    http: TestClient,
) -> None:
    out = io.StringIO()
    assert main(["silence", "query", "--api-token", TOKEN + "\r\n"], out, http) == 0, out.getvalue()
    for bad in ("tökén-0123456789abcdef", "two words-0123456789"):
        out = io.StringIO()
        assert main(["silence", "query", "--api-token", bad], out, http) == 1
        assert "API token must be printable ASCII without spaces" in out.getvalue()
        assert bad not in out.getvalue() and "tökén" not in out.getvalue()


def test_the_api_address_is_shown_without_its_credentials_or_query() -> None:
    out = io.StringIO()
    url = "http://operator:s3cret-password@127.0.0.1:9/?token=s3cret-query"
    assert main(["silence", "query", "--api-url", url, "--api-token", TOKEN], out) == 1
    assert "cannot reach the API at http://127.0.0.1:9/" in out.getvalue()
    assert "s3cret" not in out.getvalue()
    out = io.StringIO()
    assert main(["silence", "query", "--api-url", "http://[::1", "--api-token", TOKEN], out) == 1
    assert out.getvalue() == "error: the API address is not a URL (e.g. http://127.0.0.1:8080)\n"


@pytest.mark.parametrize(
    ("status", "body", "argv"),
    [
        (200, b"<html>a login page</html>", ["silence", "query"]),
        (200, b"", ["oncall", "show"]),
        (200, b"[1, 2]", ["deliveries", "failed"]),
        (200, b'{"something": "else"}', ["silence", "query"]),
        (200, b'{"something": "else"}', ["oncall", "show", "operations"]),
        (200, b'{"something": "else"}', ["deliveries", "failed"]),
        (200, b'{"something": "else"}', ["silence", "add", 'a="b"', "--duration", "1h", "--comment", "c"]),
    ],
)
def test_an_address_that_is_not_the_api_is_a_clear_error(status: int, body: bytes, argv: list[str]) -> None:
    client = httpx.Client(
        base_url="http://api.example.test",
        transport=httpx.MockTransport(lambda _request: httpx.Response(status, content=body)),
    )
    out = io.StringIO()
    assert main([*argv, "--api-token", TOKEN], out, client) == 1
    assert (
        out.getvalue()
        == "error: unexpected answer from the API at http://api.example.test (is it ticketloop's intake?)\n"
    )


def test_a_refusal_whose_body_is_not_the_apis_still_names_the_status() -> None:
    client = httpx.Client(
        base_url="http://api.example.test",
        transport=httpx.MockTransport(lambda _request: httpx.Response(403, json=["no", {"problems": "x"}])),
    )
    out = io.StringIO()
    assert main(["silence", "query", "--api-token", TOKEN], out, client) == 1
    assert out.getvalue().startswith("error: GET /api/v1/silences: HTTP 403: ")


def test_an_id_is_one_path_segment_and_an_empty_one_or_empty_duration_is_refused(
    http: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(http, "silence", "expire", "a?b=c")
    assert code == 1 and "no silence 'a?b=c'" in out
    for argv in (
        ["silence", "expire", ""],
        ["oncall", "remove", "operations", " "],
        ["silence", "add", 'a="b"', "--comment", "c", "--duration", ""],
        ["oncall", "override", "operations", "olga", "--duration", ""],
    ):
        with pytest.raises(SystemExit) as exc:
            main([*argv, "--api-token", TOKEN], io.StringIO(), http)
        assert exc.value.code == 2
        assert "must not be empty" in capsys.readouterr().err
