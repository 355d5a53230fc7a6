"""GET /api/v1/deliveries and POST .../redrive: the intake app in process, a real SQLite outbox."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, inspect
from starlette.testclient import TestClient

from services.intake.api import create_app
from services.intake.config import IntakeConfig
from services.intake.deliveries import delivery_json, list_params, without_urls
from services.intake.edge import IntakeDeps
from services.notifier.channels.base import ActionLink, Message
from services.notifier.stages import message_to_json
from shared.events import Delivery
from shared.store import db, outbox
from shared.store.outbox import OutboxItem
from shared.streaming.topics import Topics
from tests.fakes import FakePublisher

API = "api-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API}"}
CONFIG = IntakeConfig.model_validate({"api_clients": [{"name": "console", "token": API}]})
CREATED = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
LINK = "https://tl.example.test/act/eyJsaW5rIjoiYWNrIn0.signature"
VIEW = "https://tl.example.test/tickets/tl-1"


def item(nid: str, *, seq: int, target: str = "ops-chat", channel: str = "webhook") -> OutboxItem:
    message = Message(
        "assignment",
        f"[P1] tl-{seq}: disk full, see {VIEW}",
        f"Open {VIEW} to act",
        {"view_url": VIEW},
        (ActionLink("ack", "Acknowledge", LINK),),
    )
    return OutboxItem(
        notification_id=nid,
        seq=seq,
        ticket_id=f"tl-{seq}",
        team="operations",
        channel=channel,
        target=target,
        kind="assignment",
        payload=message_to_json(message),
        source_topic="t.tickets",
        source_partition=0,
        created_at=CREATED,
        due_at=CREATED,
    )


def fail(engine: Engine, it: OutboxItem, error: str, attempts: int = 7) -> None:
    outbox.add(engine, [it])
    give_up = outbox.GiveUp(
        Delivery(
            notification_id=it.notification_id,
            ticket_id=it.ticket_id,
            kind=it.kind,
            channel=it.channel,
            recipient=it.target,
            status="failed",
            attempts=attempts,
            error=error,
            at=CREATED + timedelta(days=1),
        ),
    )
    outbox.write(engine, [give_up])


class Api:
    def __init__(self, client: TestClient, engine: Engine) -> None:
        self.client, self.engine = client, engine


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 't.db'}")
    db.init_db(engine)
    app = create_app(IntakeDeps(CONFIG, FakePublisher(), engine, Topics("t.", 2), CollectorRegistry()))
    with TestClient(app) as client:
        yield Api(client, engine)
    engine.dispose()


def test_failed_deliveries_are_listed_with_what_operators_need_and_no_links_or_urls(api: Api) -> None:
    fail(api.engine, item("n-1", seq=1), "webhook ops-chat: HTTP 410")
    fail(api.engine, item("n-2", seq=2, channel="email", target="ops@example.test"), f"bounced, see {VIEW}", 3)
    outbox.add(api.engine, [item("n-3", seq=3)])  # still pending: not listed
    resp = api.client.get("/api/v1/deliveries", params={"status": "failed"}, headers=AUTH)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "deliveries": [
            {
                "notification_id": "n-1",
                "ticket_id": "tl-1",
                "team": "operations",
                "channel": "webhook",
                "target": "ops-chat",
                "kind": "assignment",
                "attempts": 7,
                "error": "webhook ops-chat: HTTP 410",
                "created_at": "2026-11-24T08:00:00+00:00",
                "subject": "[P1] tl-1: disk full, see <url>",
            },
            {
                "notification_id": "n-2",
                "ticket_id": "tl-2",
                "team": "operations",
                "channel": "email",
                "target": "ops@example.test",
                "kind": "assignment",
                "attempts": 3,
                "error": "bounced, see <url>",
                "created_at": "2026-11-24T08:00:00+00:00",
                "subject": "[P1] tl-2: disk full, see <url>",
            },
        ]
    }
    assert "https://" not in resp.text and "act/" not in resp.text


def test_the_listing_takes_a_limit_and_knows_only_failed(api: Api) -> None:
    for n in range(3):
        fail(api.engine, item(f"n-{n}", seq=n), "x")
    got = api.client.get("/api/v1/deliveries", params={"status": "failed", "limit": "2"}, headers=AUTH).json()
    assert [d["notification_id"] for d in got["deliveries"]] == ["n-0", "n-1"]
    assert len(api.client.get("/api/v1/deliveries", headers=AUTH).json()["deliveries"]) == 3, "failed by default"
    bad = api.client.get("/api/v1/deliveries", params={"status": "pending"}, headers=AUTH)
    assert bad.status_code == 422 and bad.json()["error"] == "status must be one of failed"
    bad = api.client.get("/api/v1/deliveries", params={"limit": "many"}, headers=AUTH)
    assert bad.status_code == 422 and bad.json()["error"] == "limit must be an integer"


def test_redrive_marks_a_failed_delivery_for_the_notifier_once(api: Api) -> None:
    fail(api.engine, item("n-1", seq=1), "webhook ops-chat: HTTP 410")
    fail(api.engine, item("n-2", seq=2), "webhook ops-chat: HTTP 410")
    resp = api.client.post("/api/v1/deliveries/n-1/redrive", headers=AUTH)
    assert resp.status_code == 202, resp.text
    assert resp.json() == {"status": "redriving", "notification_id": "n-1"}
    listed = api.client.get("/api/v1/deliveries", headers=AUTH).json()["deliveries"]
    assert [d["notification_id"] for d in listed] == ["n-2"]
    [taken] = outbox.take_redriven(api.engine, [("t.tickets", 0)])
    assert (taken.notification_id, taken.status, taken.attempts) == ("n-1", "pending", 0)
    again = api.client.post("/api/v1/deliveries/n-1/redrive", headers=AUTH)
    assert again.status_code == 404 and again.json()["error"] == "no failed delivery 'n-1'"


def test_redrive_of_an_unknown_or_pending_delivery_is_404_and_counted(api: Api) -> None:
    outbox.add(api.engine, [item("n-3", seq=3)])
    for nid in ("nope", "n-3"):
        resp = api.client.post(f"/api/v1/deliveries/{nid}/redrive", headers=AUTH)
        assert resp.status_code == 404 and resp.json()["error"] == f"no failed delivery {nid!r}"
    assert outbox.pending(api.engine, [("t.tickets", 0)])[0].notification_id == "n-3"
    text = api.client.get("/metrics").text
    assert 'ticketloop_intake_requests_rejected_total{reason="api"} 2.0' in text


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-0123456789"}])
def test_both_routes_need_an_api_token(api: Api, headers: dict[str, str]) -> None:
    fail(api.engine, item("n-1", seq=1), "x")
    assert api.client.get("/api/v1/deliveries", headers=headers).status_code == 401
    assert api.client.post("/api/v1/deliveries/n-1/redrive", headers=headers).status_code == 401
    assert [i.notification_id for i in outbox.failed(api.engine)] == ["n-1"], "nothing redriven"


def test_intake_alone_creates_the_outbox_table(tmp_path: Path) -> None:
    """intake may start before the notifier: its own init_db must create the table it reads."""
    url = f"sqlite:///{tmp_path / 'alone.db'}"
    code = (
        "import sys; from services.intake.api import create_app; from shared.store import db; "
        f"db.init_db(db.make_engine({url!r})); sys.exit('shared.store.outbox' not in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
    assert "notify_outbox" in inspect(db.make_engine(url)).get_table_names()


def test_without_urls_replaces_every_scheme() -> None:
    text = "see https://a.test/x?y=1, http://b.test and mailto://c then smtp.example.test:25"
    assert without_urls(text) == "see <url> <url> and <url> then smtp.example.test:25"


def test_list_params() -> None:
    assert list_params({}) == ("failed", 100)
    assert list_params({"limit": "0"}) == ("failed", 1)
    assert list_params({"limit": "99999"}) == ("failed", 1000)
    with pytest.raises(ValueError, match="status must be one of failed"):
        list_params({"status": "redrive"})


def test_delivery_json_leaves_out_the_message_text_and_links() -> None:
    shown = delivery_json(item("n-1", seq=1))
    assert set(shown) == {
        "notification_id",
        "ticket_id",
        "team",
        "channel",
        "target",
        "kind",
        "attempts",
        "error",
        "created_at",
        "subject",
    }
    assert LINK not in str(shown) and VIEW not in str(shown)
