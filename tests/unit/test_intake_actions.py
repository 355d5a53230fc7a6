"""One-click action links and Slack's interactive callback on intake, with a fake publisher and SQLite."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest
import structlog
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from starlette.testclient import TestClient

from services.intake.api import create_app
from services.intake.config import IntakeConfig
from services.intake.edge import IntakeDeps
from services.intake.publisher import Record
from shared.events import Change, Command, TicketEvent, TicketState
from shared.infra.actionlinks import LinkAction, issue, keys_from_setting, link_url, token_from_link, verify
from shared.infra.config import ConfigWatcher
from shared.rules.oncall import TeamsConfig, person_may_act
from shared.store import db
from shared.streaming.topics import Topics
from tests.fakes import FakePublisher
from tests.unit.factories import T0, ticket

KEYS = keys_from_setting("link-key-0123456789abcdef")
OTHER_KEYS = keys_from_setting("other-key-0123456789abcdef")
SLACK_SECRET = "slack-signing-secret-0123456789"
SOON = datetime.now(UTC) + timedelta(days=7)
CONFIG = IntakeConfig.model_validate({"integrations": [], "api_clients": []})


@dataclass
class Vendor:
    """A tiny local HTTP server standing in for Slack's response_url."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def slack_server() -> Iterator[Vendor]:
    vendor = Vendor("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            vendor.received.append(
                {"path": self.path, "type": self.headers["Content-Type"], "json": orjson.loads(body)}
            )
            self.send_response(vendor.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    vendor.url = f"http://127.0.0.1:{server.server_address[1]}/actions/T1/B2/secret-response-path"
    yield vendor
    server.shutdown()
    server.server_close()
    thread.join()


class Intake:
    def __init__(self, client: TestClient, publisher: FakePublisher, engine: Any) -> None:
        self.client, self.publisher, self.engine = client, publisher, engine

    def link(self, action: LinkAction = "ack", ticket_id: str = "tl-1", person: str = "olga", **kw: Any) -> str:
        token = issue(kw.get("keys", KEYS), ticket_id, action, person, kw.get("expires_at", SOON))
        return link_url("http://testserver", token).removeprefix("http://testserver")

    def commands(self) -> list[Command]:
        return [Command.model_validate_json(r.value) for r in self.publisher.records]

    def metric(self, action: str, result: str) -> float:
        for line in self.client.get("/metrics").text.splitlines():
            if line.startswith(f'ticketloop_intake_action_links_total{{action="{action}",result="{result}"}} '):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def slack(self, payload: dict[str, Any], *, secret: str = SLACK_SECRET, age_s: int = 0) -> httpx.Response:
        body = urlencode({"payload": orjson.dumps(payload).decode()}).encode()
        timestamp = str(int(time.time()) - age_s)
        mac = hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": f"v0={mac}",
        }
        resp: httpx.Response = self.client.post("/api/v1/slack/interactions", content=body, headers=headers)
        return resp


def project(engine: Any, **over: Any) -> None:
    t = ticket(person="erik", **over)
    db.project(
        engine,
        [TicketEvent(change_id=f"tl-1:{t.version}", change=Change.opened, actor="am", at=T0, ticket=t, trace_id="t")],
    )


def make_intake(tmp_path: Path, publisher: Any, config: IntakeConfig = CONFIG, **deps: Any) -> Iterator[Intake]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 't.db'}")
    db.init_db(engine)
    project(engine)
    http = httpx.AsyncClient()
    options: dict[str, Any] = {"link_keys": KEYS, "slack_signing_secret": SecretStr(SLACK_SECRET), **deps}
    app = create_app(
        IntakeDeps(
            config,
            publisher,
            engine,
            Topics("t.", 2),
            CollectorRegistry(),
            max_body_bytes=2048,
            http=http,
            **options,
        )
    )
    with TestClient(app) as client:
        yield Intake(client, publisher, engine)
        assert client.portal is not None
        client.portal.call(http.aclose)


@pytest.fixture
def intake(tmp_path: Path) -> Iterator[Intake]:
    yield from make_intake(tmp_path, FakePublisher())


def test_get_shows_what_the_button_does_and_changes_nothing(intake: Intake) -> None:
    path = intake.link("ack")
    page = intake.client.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    text = page.text
    assert text.startswith("<!DOCTYPE html>")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in text
    assert "<title>Acknowledge tl-1? · ticketloop</title>" in text
    for shown in ("disk full", "<dd>open</dd>", "<dd>erik (team ops)</dd>", "<dd>P1</dd>"):
        assert shown in text
    assert "The button will acknowledge the ticket as olga." in text
    assert '<form method="post"><button type="submit">Acknowledge</button></form>' in text
    assert "<script" not in text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert intake.client.head(path).status_code == 200
    assert intake.client.get(path).status_code == 200
    assert intake.publisher.records == []
    assert intake.metric("ack", "confirmed_page") == 3


@pytest.mark.parametrize(
    ("action", "expected", "done"),
    [("ack", "acknowledge", "Acknowledged"), ("resolve", "resolve", "Resolved"), ("take", "reassign", "Taken")],
)
def test_post_publishes_one_command_as_the_links_person(intake: Intake, action: Any, expected: str, done: str) -> None:
    path = intake.link(action)
    resp = intake.client.post(f"{path}?actor=mallory", data={"actor": "mallory", "person": "mallory"})
    assert resp.status_code == 200, resp.text
    assert f"<h1>{done} by olga</h1>" in resp.text
    [record] = intake.publisher.records
    assert (record.topic, record.key) == ("t.commands", "tl-1")
    assert ("ticket_id", b"tl-1") in record.headers
    [cmd] = intake.commands()
    assert (cmd.action, cmd.actor, cmd.reason, cmd.ticket_id) == (expected, "olga", "one-click link", "tl-1")
    assert cmd.command_id.startswith("link:")
    if action == "take":
        assert (cmd.person, cmd.team) == ("olga", None), "the team stays"
    else:
        assert cmd.person is None
    assert intake.metric(action, "acted") == 1


def test_snooze_is_for_one_hour(intake: Intake) -> None:
    assert intake.client.post(intake.link("snooze")).status_code == 200
    [cmd] = intake.commands()
    assert cmd.action == "snooze" and cmd.until is not None
    assert cmd.until - cmd.issued_at == timedelta(hours=1)


def test_a_link_acts_once_then_shows_the_current_state(intake: Intake) -> None:
    path = intake.link("ack")
    assert intake.client.post(path).status_code == 200
    project(intake.engine, state=TicketState.acknowledged, version=2)
    again = intake.client.post(path)
    assert again.status_code == 200
    assert "This link was already used" in again.text
    assert "<dt>State now</dt><dd>acknowledged</dd>" in again.text
    assert "acknowledge the ticket as olga" in again.text
    assert len(intake.publisher.records) == 1
    shown = intake.client.get(path)
    assert "This link was already used" in shown.text and "<form" not in shown.text
    assert intake.metric("ack", "already_used") == 2
    other = intake.client.post(intake.link("ack"))
    assert other.status_code == 200 and len(intake.publisher.records) == 2, "another link still acts"


def _edited(path: str) -> str:
    last = path[-5]
    return path[:-5] + ("A" if last != "A" else "B") + path[-4:]


@pytest.mark.parametrize(
    ("make", "reason", "action", "says"),
    [
        (lambda i: i.link("ack", keys=OTHER_KEYS), "forged", "unknown", "its signature does not match"),
        (lambda i: _edited(i.link("resolve")), "forged", "unknown", "its signature does not match"),
        (
            lambda i: i.link("resolve", expires_at=datetime.now(UTC) - timedelta(seconds=1)),
            "expired",
            "resolve",
            'This link has expired; open the ticket <span class="nb">tl-1</span>',
        ),
        (lambda _i: "/act/not-a-token", "malformed", "unknown", "incomplete or damaged"),
        (
            lambda i: i.link("ack", ticket_id="tl-404"),
            "unknown_ticket",
            "ack",
            '<span class="nb">tl-404</span>, which does not exist',
        ),
    ],
)
def test_refused_links_are_403_counted_and_act_on_nothing(
    intake: Intake, make: Any, reason: str, action: str, says: str
) -> None:
    path = make(intake)
    for method in (intake.client.get, intake.client.post):
        page = method(path)
        assert page.status_code == 403
        assert says in page.text
        assert page.text.startswith("<!DOCTYPE html>")
    assert intake.publisher.records == []
    assert intake.metric(action, reason) == 2


def test_a_viewers_link_is_a_403_that_acts_on_nothing_and_leaves_the_link_unused(tmp_path: Path) -> None:
    """teams.yaml gives olga the role viewer: her links neither act nor count as used; erik (responder) acts."""
    teams = tmp_path / "teams.yaml"
    teams.write_text("people:\n  olga: {name: Olga, role: viewer}\n  erik: {name: Erik}\n")
    for intake in make_intake(tmp_path, FakePublisher(), teams=ConfigWatcher(teams, TeamsConfig)):
        link = intake.link("ack", person="olga")
        for method in (intake.client.get, intake.client.post):
            page = method(link)
            assert page.status_code == 403
            assert "viewer" in page.text and "Nothing was changed" in page.text
        assert intake.publisher.records == []
        assert intake.metric("ack", "not_allowed") == 2
        claims = verify(KEYS, token_from_link(link), datetime.now(UTC))
        assert db.get_link_use(intake.engine, claims.link_id) is None, "the link was not used up"
        assert intake.client.post(intake.link("ack", person="erik")).status_code == 200
        assert [c.actor for c in intake.commands()] == ["erik"]


def test_a_person_may_act_unless_teams_yaml_makes_them_a_viewer() -> None:
    people = TeamsConfig.model_validate({"people": {"vic": {"role": "viewer"}, "rae": {}, "ada": {"role": "admin"}}})
    assert not person_may_act(people.people, "vic")
    assert person_may_act(people.people, "rae") and person_may_act(people.people, "ada")
    assert person_may_act(people.people, "operations team"), "a team's link names no person of teams.yaml"


def test_without_keys_links_are_not_configured(tmp_path: Path) -> None:
    for intake in make_intake(tmp_path, FakePublisher(), link_keys=None, slack_signing_secret=None):
        path = intake.link("ack")
        for method in (intake.client.get, intake.client.post):
            page = method(path)
            assert page.status_code == 404
            assert "Action links are not configured" in page.text
        assert intake.slack({"type": "block_actions"}).status_code == 404
        assert intake.publisher.records == []


def test_broker_down_is_503_and_leaves_the_link_usable(intake: Intake) -> None:
    path = intake.link("ack")
    intake.publisher.down = True
    down = intake.client.post(path)
    assert down.status_code == 503
    assert down.headers["retry-after"] == "5"
    assert "Nothing was changed" in down.text
    assert '<button type="submit">Try again: Acknowledge</button>' in down.text
    assert intake.metric("ack", "unavailable") == 1
    assert db.get_link_use(intake.engine, _link_id(path)) is None, "not marked used"
    intake.publisher.down = False
    retry = intake.client.post(path)
    assert retry.status_code == 200 and "Acknowledged by olga" in retry.text
    assert len(intake.commands()) == 1


def _link_id(path: str) -> str:
    from shared.infra.actionlinks import verify

    return verify(KEYS, path.removeprefix("/act/"), datetime.now(UTC)).link_id


def test_html_escapes_everything_from_the_ticket(intake: Intake) -> None:
    project(intake.engine, summary='<script>alert("x")</script> & <b>', team="<ops>", version=2)
    text = intake.client.get(intake.link("take", person="<olga>")).text
    assert "<script>" not in text and "<b>" not in text and "<ops>" not in text and "<olga>" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;" in text
    assert "make &lt;olga&gt; the ticket&#x27;s owner" in text


def test_the_token_is_never_logged(intake: Intake, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    paths = [intake.link("ack"), intake.link("ack", keys=OTHER_KEYS), intake.link("ack", expires_at=T0)]
    with structlog.testing.capture_logs() as events:
        for path in paths:
            intake.client.get(path)
            intake.client.post(path)
        intake.publisher.down = True
        intake.client.post(intake.link("resolve"))
    assert [e["result"] for e in events if e["event"] == "action_link"] == [
        "confirmed_page",
        "acted",
        "forged",
        "forged",
        "expired",
        "expired",
        "unavailable",
    ]
    tokens = [p.removeprefix("/act/") for p in paths]
    logged = [repr(e) for e in events] + [
        r.getMessage() for r in caplog.records if not r.getMessage().startswith("HTTP Request: ")
    ]  # the test client's own request lines name the URL it fetched
    for token in tokens:
        for part in (token, *token.split(".")):
            assert not any(part in line for line in logged)


class GatedPublisher(FakePublisher):
    """Holds every publish until ``gate`` opens; ``entered`` says one is waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def publish(self, records: Sequence[Record]) -> None:
        self.entered.set()
        await self.gate.wait()
        await super().publish(records)


async def test_two_racing_posts_publish_once(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 't.db'}")
    db.init_db(engine)
    project(engine)
    publisher = GatedPublisher()
    app = create_app(IntakeDeps(CONFIG, publisher, engine, Topics("t.", 2), CollectorRegistry(), link_keys=KEYS))
    path = link_url("", issue(KEYS, "tl-1", "ack", "olga", SOON))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://intake") as client:
        first = asyncio.create_task(client.post(path))
        await publisher.entered.wait()  # the first request holds the claim and waits for Kafka
        second = await client.post(path)
        publisher.gate.set()
        done = await first
    assert done.status_code == 200 and "Acknowledged by olga" in done.text
    assert second.status_code == 200 and "This link is being used right now" in second.text
    assert len(publisher.records) == 1


def test_claims_race_and_a_stale_claim_is_taken_over(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 't.db'}")
    db.init_db(engine)
    now = datetime.now(UTC)
    common = {"link_id": "L1", "ticket_id": "tl-1", "action": "ack", "person": "olga", "lease_s": 60.0}
    barrier = threading.Barrier(8)
    won: list[bool] = []

    def claim(n: int) -> None:
        barrier.wait()
        won.append(db.claim_link(engine, claim=f"c{n}", now=now, **common))  # type: ignore[arg-type]

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == [False] * 7 + [True]
    holder = db.get_link_use(engine, "L1")
    assert holder is not None and holder.used_at is None
    assert not db.claim_link(engine, claim="late", now=now + timedelta(seconds=59), **common)  # type: ignore[arg-type]
    assert db.claim_link(engine, claim="later", now=now + timedelta(seconds=61), **common)  # type: ignore[arg-type]
    assert not db.confirm_link_use(engine, "L1", holder.claim, now), "the first holder lost its claim"
    db.release_link(engine, "L1", holder.claim)
    assert db.get_link_use(engine, "L1") is not None, "only the holder can give a claim back"
    assert db.confirm_link_use(engine, "L1", "later", now)
    assert not db.claim_link(engine, claim="x", now=now + timedelta(days=1), **common)  # type: ignore[arg-type]


def _block_actions(value: str, **over: Any) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": {"id": "U123", "username": "olga.s", "name": "olga.s", "team_id": "T1"},
        "actions": [{"type": "button", "action_id": "ack", "block_id": "b", "value": value}],
        "response_url": over.pop("response_url", ""),
        **over,
    }


@pytest.mark.parametrize("as_url", [True, False])
def test_slack_button_acts_and_redraws_the_message(intake: Intake, slack_server: Vendor, as_url: bool) -> None:
    path = intake.link("ack")
    value = f"https://tl.example.com{path}" if as_url else path.removeprefix("/act/")
    resp = intake.slack(_block_actions(value, response_url=slack_server.url))
    assert resp.status_code == 200
    [cmd] = intake.commands()
    assert (cmd.action, cmd.actor, cmd.reason) == ("acknowledge", "olga", "one-click link via Slack by @olga.s")
    [redraw] = slack_server.received
    assert redraw["path"] == "/actions/T1/B2/secret-response-path"
    assert redraw["type"] == "application/json"
    body = redraw["json"]
    assert body["replace_original"] is True
    line = "*Acknowledged* by olga (via Slack, @olga.s) — tl-1: disk full"
    assert body["text"] == line
    assert body["blocks"] == [{"type": "section", "text": {"type": "mrkdwn", "text": line}}]
    assert intake.metric("ack", "acted") == 1


def test_slack_second_click_acts_no_more(intake: Intake, slack_server: Vendor) -> None:
    value = intake.link("resolve").removeprefix("/act/")
    for _ in range(2):
        assert intake.slack(_block_actions(value, response_url=slack_server.url)).status_code == 200
    assert len(intake.commands()) == 1
    second = slack_server.received[1]["json"]
    assert second["replace_original"] is True
    assert second["text"] == "*Resolve*: this button was already used (now open) — tl-1: disk full"


def test_slack_failures_leave_the_buttons_and_say_why(intake: Intake, slack_server: Vendor) -> None:
    intake.publisher.down = True
    value = intake.link("ack").removeprefix("/act/")
    assert intake.slack(_block_actions(value, response_url=slack_server.url)).status_code == 200
    expired = intake.link("ack", expires_at=T0).removeprefix("/act/")
    assert intake.slack(_block_actions(expired, response_url=slack_server.url)).status_code == 200
    down, old = (r["json"] for r in slack_server.received)
    assert down["replace_original"] is False and down["response_type"] == "ephemeral"
    assert "try again in a minute" in down["text"]
    assert old["replace_original"] is False and old["text"].startswith("This link has expired; open the ticket tl-1")
    intake.publisher.down = False
    assert intake.slack(_block_actions(value, response_url=slack_server.url)).status_code == 200
    assert len(intake.commands()) == 1, "the button still works once the broker is back"


@pytest.mark.parametrize(
    ("sign", "error"),
    [
        ({"secret": "wrong-secret-0123456789"}, "bad signature"),
        # past the 5-minute window with room: the stamp is whole seconds, and a loaded machine takes its time
        ({"age_s": 330}, "stale request"),
        ({"age_s": -330}, "stale request"),
    ],
)
def test_slack_bad_or_stale_signatures_are_401(
    intake: Intake, slack_server: Vendor, sign: dict[str, Any], error: str
) -> None:
    value = intake.link("ack").removeprefix("/act/")
    resp = intake.slack(_block_actions(value, response_url=slack_server.url), **sign)
    assert resp.status_code == 401
    assert resp.json() == {"error": error}
    assert intake.publisher.records == [] and slack_server.received == []


def test_slack_requests_without_or_with_odd_signature_headers_are_401(intake: Intake) -> None:
    body = b"payload=%7B%7D"
    now = str(int(time.time())).encode()
    headers: dict[str, bytes]
    for headers in (
        {},
        {"X-Slack-Request-Timestamp": now},
        {"X-Slack-Request-Timestamp": b"1e9", "X-Slack-Signature": b"v0=00"},
        {"X-Slack-Request-Timestamp": b" " + now, "X-Slack-Signature": b"v0=00"},
        {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": b"v0=\xe9"},
    ):
        resp = intake.client.post("/api/v1/slack/interactions", content=body, headers=headers)
        assert resp.status_code == 401 and resp.json() == {"error": "bad signature"}


def test_slack_other_payloads_are_answered_and_ignored(intake: Intake, slack_server: Vendor) -> None:
    assert intake.slack({"type": "view_closed", "user": {"id": "U1"}}).status_code == 200
    assert intake.slack(_block_actions("garbage", response_url=slack_server.url)).status_code == 200
    assert slack_server.received[0]["json"]["replace_original"] is False
    assert "incomplete or damaged" in slack_server.received[0]["json"]["text"]
    assert intake.publisher.records == []
    assert intake.metric("unknown", "malformed") == 1


def test_slack_redraw_failures_are_logged_without_the_url(intake: Intake, slack_server: Vendor) -> None:
    slack_server.status = 404
    value = intake.link("ack").removeprefix("/act/")
    with structlog.testing.capture_logs() as events:
        assert intake.slack(_block_actions(value, response_url=slack_server.url)).status_code == 200
        unreachable = "http://127.0.0.1:9/actions/secret-response-path"
        other = intake.link("ack").removeprefix("/act/")
        assert intake.slack(_block_actions(other, response_url=unreachable)).status_code == 200
    failures = [e for e in events if e["event"] == "slack_redraw_failed"]
    assert [f.get("status") or f.get("error") for f in failures] == [404, "ConnectError"]
    assert not any("secret-response-path" in repr(e) for e in events)
    assert len(intake.commands()) == 2, "a failed redraw does not undo the action"


@pytest.mark.parametrize("url", ["http://[::1", "http://x/\x00", "file:///etc/passwd", "not a url"])
def test_a_response_url_that_cannot_be_posted_to_is_a_warning_and_the_action_stands(intake: Intake, url: str) -> None:
    value = intake.link("ack").removeprefix("/act/")
    with structlog.testing.capture_logs() as logs:
        assert intake.slack(_block_actions(value, response_url=url)).status_code == 200
    assert len(intake.commands()) == 1
    assert [e["event"] for e in logs if e["log_level"] in ("warning", "error")][-1:] == ["slack_redraw_failed"]
