"""``ticketloop deliveries`` against the real API app in process (fake publisher, real SQLite outbox)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from starlette.testclient import TestClient

from services.cli import main
from services.cli_client import age, delivery_line
from services.intake.api import create_app
from services.intake.config import IntakeConfig
from services.intake.edge import IntakeDeps
from shared.store import db, outbox
from shared.streaming.topics import Topics
from tests.fakes import FakePublisher
from tests.unit.test_intake_deliveries import fail, item

TOKEN = "api-token-0123456789abcdef"


class Cli:
    def __init__(self, http: TestClient, engine: Engine) -> None:
        self.http, self.engine = http, engine

    def run(self, *argv: str, token: str = TOKEN) -> tuple[int, str]:
        out = io.StringIO()
        return main([*argv, "--api-token", token], out, self.http), out.getvalue()

    def failed_ids(self) -> list[str]:
        return [i.notification_id for i in outbox.failed(self.engine)]


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 't.db'}")
    db.init_db(engine)
    config = IntakeConfig.model_validate({"api_clients": [{"name": "console", "token": TOKEN}]})
    app = create_app(IntakeDeps(config, FakePublisher(), engine, Topics("t.", 2), CollectorRegistry()))
    with TestClient(app) as client:
        yield Cli(client, engine)
    engine.dispose()


def test_deliveries_failed_prints_one_line_each(cli: Cli) -> None:
    planned = datetime.now(UTC) - timedelta(days=2, hours=4, minutes=30)  # reads 2d04h for half an hour
    fail(cli.engine, replace(item("n-1", seq=1), created_at=planned), "webhook ops-chat: HTTP 410")
    fail(cli.engine, replace(item("n-2", seq=2, channel="email", target="ops@example.test"), created_at=planned), "")
    code, out = cli.run("deliveries", "failed")
    assert code == 0, out
    assert out.splitlines() == [
        "n-1  tl-1  webhook ops-chat  attempts=7  2d04h  webhook ops-chat: HTTP 410",
        "n-2  tl-2  email ops@example.test  attempts=7  2d04h  -",
    ]
    assert cli.run("deliveries", "failed", "--limit", "1")[1].splitlines()[0].startswith("n-1 ")
    assert len(cli.run("deliveries", "failed", "--limit", "1")[1].splitlines()) == 1


def test_deliveries_redrive_by_id_reports_each_and_fails_on_unknown(cli: Cli) -> None:
    for n in (1, 2, 3):
        fail(cli.engine, item(f"n-{n}", seq=n), "x")
    code, out = cli.run("deliveries", "redrive", "n-1", "nope", "n-3")
    assert code == 1
    assert out.splitlines() == [
        "redriving n-1",
        "error: POST /api/v1/deliveries/nope/redrive: no failed delivery 'nope'",
        "redriving n-3",
    ]
    assert cli.failed_ids() == ["n-2"]
    assert cli.run("deliveries", "redrive", "n-2") == (0, "redriving n-2\n")
    assert cli.failed_ids() == []


def test_deliveries_redrive_all(cli: Cli) -> None:
    for n in (1, 2):
        fail(cli.engine, item(f"n-{n}", seq=n), "x")
    outbox.add(cli.engine, [item("n-3", seq=3)])
    code, out = cli.run("deliveries", "redrive", "--all")
    assert (code, out) == (0, "redriving n-1\nredriving n-2\n")
    assert cli.failed_ids() == []
    assert [i.notification_id for i in outbox.pending(cli.engine, [("t.tickets", 0)])] == ["n-3"]
    assert cli.run("deliveries", "redrive", "--all") == (0, ""), "nothing left to redrive"


def test_deliveries_need_a_valid_token(cli: Cli) -> None:
    fail(cli.engine, item("n-1", seq=1), "x")
    for argv in (("deliveries", "failed"), ("deliveries", "redrive", "--all"), ("deliveries", "redrive", "n-1")):
        code, out = cli.run(*argv, token="wrong-token-0123456789")
        assert code == 1 and "invalid API token" in out
    assert cli.failed_ids() == ["n-1"]


def test_redrive_needs_ids_or_all(cli: Cli) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.run("deliveries", "redrive")
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        cli.run("deliveries", "redrive", "n-1", "--all")


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (59, "59s"),
        (60, "1m"),
        (3599, "59m"),
        (3600, "1h00m"),
        (3 * 3600 + 5 * 60, "3h05m"),
        (86400 * 2 + 4 * 3600 + 59, "2d04h"),
        (-5, "0s"),
    ],
)
def test_age(seconds: int, shown: str) -> None:
    now = datetime(2026, 11, 24, tzinfo=UTC)
    assert age(now - timedelta(seconds=seconds), now) == shown


def test_delivery_line() -> None:
    d = {
        "notification_id": "n-1",
        "ticket_id": "tl-1",
        "channel": "slack",
        "target": "ops-slack",
        "attempts": 2,
        "error": "slack ops-slack: HTTP 404",
        "created_at": "2026-11-24T08:00:00+00:00",
    }
    line = delivery_line(d, datetime(2026, 11, 24, 9, 30, tzinfo=UTC))
    assert line == "n-1  tl-1  slack ops-slack  attempts=2  1h30m  slack ops-slack: HTTP 404"
