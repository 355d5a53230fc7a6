"""intake's one-click action pages in a real headless Chromium (Debian's ``chromium``, installed by
``deploy/local/bootstrap.sh test``), on a phone-sized window: each page renders with its button or its reason,
logs nothing to the browser console, and a browser's GET acts on nothing (no claim row, nothing on Kafka).

Console messages: with ``--enable-logging=stderr --v=0`` Chromium writes every message a page logs to its
console (console.*, uncaught exceptions, Content-Security-Policy violations), whatever its level, as one stderr
line ``[pid:tid:MMDD/HHMMSS.us:INFO:CONSOLE:<line>] "<message>", source: <url> (<line>)`` (older builds:
``CONSOLE(<line>)``). Every other stderr line is the browser's own noise (D-Bus, GPU, sandbox). The pages carry no
script, so any console line at all is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from sqlalchemy import Engine
from starlette.applications import Starlette

from deploy.local.kafka_local import free_port
from services.intake.action_pages import HTML_HEADERS
from services.intake.api import create_app
from services.intake.config import IntakeConfig
from services.intake.edge import IntakeDeps
from services.intake.publisher import KafkaPublisher
from services.router.grouping import new_ticket_id
from shared.events import Change, Command, InboundEvent, TicketEvent
from shared.infra.actionlinks import LinkAction, LinkKeys, issue, keys_from_setting, link_url, verify
from shared.store import db
from shared.streaming.topics import Topics, TopicSpec, ensure_topics
from tests.support.chromium import Browser, console_problems, find_browser
from tests.support.waiting import wait_for
from tests.unit.factories import T0, ticket

pytestmark = pytest.mark.integration
M = TypeVar("M", bound=BaseModel)

KEYS = keys_from_setting("browser-link-key-0123456789abcdef")
OTHER_KEYS = keys_from_setting("someone-elses-key-0123456789abcdef")
TICKET = new_ticket_id("browser-e1")  # as the router names tickets: "tl-" and 16 hex digits
SUMMARY = "Disk /var/lib/postgresql/15/main on db-primary-1.eu-west-1.internal.example.com is 97% full"
FORM_TOKEN = "browser-form-token-0123456789"


@pytest.fixture
def browser(tmp_path: Path) -> Browser:
    return find_browser(tmp_path / "chromium-profile")


@dataclass(frozen=True)
class Intake:
    url: str
    engine: Engine
    topics: Topics
    bootstrap: str

    def link(self, action: LinkAction = "ack", *, keys: LinkKeys = KEYS, expires_at: datetime | None = None) -> str:
        at = expires_at or datetime.now(UTC) + timedelta(days=1)
        return link_url(self.url, issue(keys, TICKET, action, "olga", at))


def _serve(server: uvicorn.Server) -> None:
    asyncio.run(server.serve())


@pytest.fixture
def intake(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Intake]:
    """The real intake app (real KafkaPublisher, SQLite read model with one ticket) under uvicorn, on 127.0.0.1."""
    topics = Topics(f"it-browser-{os.getpid()}-{datetime.now(UTC):%H%M%S%f}.", 2)
    engine = db.make_engine(f"sqlite:///{tmp_path / 'intake.db'}")
    db.init_db(engine)
    t = ticket(ticket_id=TICKET, summary=SUMMARY, person="erik")
    db.project(
        engine, [TicketEvent(change_id=f"{TICKET}:1", change=Change.opened, actor="am", at=T0, ticket=t, trace_id="t")]
    )
    publisher = KafkaPublisher(kafka_bootstrap, timeout_s=10)
    app = create_app(
        IntakeDeps(
            config=IntakeConfig.model_validate(
                {
                    "integrations": [],
                    "api_clients": [],
                    "forms": [{"name": "shop", "token": FORM_TOKEN, "title": "ACME"}],
                }
            ),
            publisher=publisher,
            engine=engine,
            topics=topics,
            registry=CollectorRegistry(),
            link_keys=KEYS,
        )
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await ensure_topics(kafka_bootstrap, topics.all(), attempts=10)
        await publisher.start()
        yield
        await publisher.stop()

    app.router.lifespan_context = lifespan
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=_serve, args=(server,), daemon=True)
    thread.start()
    try:
        wait_for("intake to listen", lambda: server.started or not thread.is_alive(), timeout=60)
        assert thread.is_alive(), "intake's server stopped while starting"
        wait_for("intake's publisher to connect", lambda: publisher.ready, timeout=60)
        yield Intake(f"http://127.0.0.1:{port}", engine, topics, kafka_bootstrap)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        engine.dispose()


async def read_to_end(bootstrap: str, topic: TopicSpec, model: type[M]) -> list[M]:
    """Every record on ``topic``, as ``model``, up to its end offsets as of now (a bounded read, not a wait for news)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        parts = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        out: list[M] = []
        async with asyncio.timeout(30):
            while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    out.extend(model.model_validate_json(r.value) for r in records if r.value is not None)
        return out
    finally:
        await consumer.stop()


def test_the_console_check_sees_a_csp_refusal_and_an_uncaught_error(browser: Browser, tmp_path: Path) -> None:
    """The detector works on this Chromium: a page under the pages' own policy that tries to run a script, and a
    page whose script throws, both show up."""
    policy = HTML_HEADERS["Content-Security-Policy"].replace("; frame-ancestors 'none'", "")  # meta cannot say it
    blocked = tmp_path / "blocked.html"
    blocked.write_text(
        f'<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="{policy}"></head>'
        "<body><p>x</p><script>document.title = 'ran'</script></body></html>"
    )
    throws = tmp_path / "throws.html"
    throws.write_text("<!DOCTYPE html><html><body><script>throw new Error('kaboom')</script></body></html>")
    _, err = browser.dom(blocked.as_uri())
    assert any("Content Security Policy" in line for line in console_problems(err)), err[-3000:]
    _, err = browser.dom(throws.as_uri())
    assert any("Uncaught Error: kaboom" in line for line in console_problems(err)), err[-3000:]


def test_pages_render_on_a_phone_without_console_errors_and_a_browser_get_acts_on_nothing(
    intake: Intake, browser: Browser, tmp_path: Path
) -> None:
    valid = intake.link("ack")
    forged = intake.link("ack", keys=OTHER_KEYS)
    expired = intake.link("resolve", expires_at=datetime.now(UTC) - timedelta(minutes=5))
    status = {u: httpx.get(u, timeout=10).status_code for u in (valid, forged, expired)}
    assert list(status.values()) == [200, 403, 403]

    shots = {"confirm": valid, "forged": forged, "expired": expired}
    expected = {
        "confirm": [
            f'<h1>Acknowledge <span class="nb">{TICKET}?</span></h1>',
            SUMMARY,
            "<dd>erik (team ops)</dd>",
            "The button will acknowledge the ticket as olga.",
            '<form method="post"><button type="submit">Acknowledge</button></form>',
        ],
        "forged": ["<h1>This link cannot be used</h1>", "its signature does not match"],
        "expired": [
            "<h1>This link has expired</h1>",
            f'open the ticket <span class="nb">{TICKET}</span> in ticketloop',
        ],
    }
    problems: dict[str, list[str]] = {}
    for name, url in shots.items():
        png = tmp_path / f"{name}.png"
        problems[f"{name} screenshot"] = console_problems(browser.screenshot(url, png))
        dom, err = browser.dom(url)
        problems[f"{name} dom"] = console_problems(err)
        missing = [text for text in expected[name] if text not in dom]
        assert not missing, f"{name}: not in the rendered DOM: {missing}\n{dom}"
        assert "<script" not in dom
    assert not any(problems.values()), problems

    link_id = verify(KEYS, valid.rsplit("/act/", 1)[1], datetime.now(UTC)).link_id
    assert db.get_link_use(intake.engine, link_id) is None, "a GET in a browser claimed the link"
    commands = intake.topics.commands
    assert asyncio.run(read_to_end(intake.bootstrap, commands, Command)) == [], "a GET in a browser published a command"

    # the same two checks do see an act: a POST claims the link and puts its command on the topic
    acted = httpx.post(valid, timeout=30)
    assert acted.status_code == 200, acted.text
    use = db.get_link_use(intake.engine, link_id)
    assert use is not None and use.used_at is not None
    [cmd] = asyncio.run(read_to_end(intake.bootstrap, commands, Command))
    assert (cmd.command_id, cmd.action, cmd.actor) == (f"link:{link_id}", "acknowledge", "olga")

    # and the link, opened again in the browser, says it was used
    err = browser.screenshot(valid, tmp_path / "used.png")
    dom, dom_err = browser.dom(valid)
    assert "<h1>This link was already used</h1>" in dom and "Nothing was done now." in dom, dom
    assert "<form" not in dom
    assert console_problems(err) == console_problems(dom_err) == []


def test_the_feedback_form_renders_on_a_phone_in_both_languages_and_what_it_sends_is_on_kafka(
    intake: Intake, browser: Browser, tmp_path: Path
) -> None:
    problems: dict[str, list[str]] = {}
    for lang, expected in {
        "en": ["Report a problem · ACME", "Something is broken"],
        "zh-CN": ["反馈问题 · ACME", "改进建议"],
    }.items():
        url = f"{intake.url}/feedback/shop?t={FORM_TOKEN}&lang={lang}"
        problems[f"{lang} screenshot"] = console_problems(browser.screenshot(url, tmp_path / f"form-{lang}.png"))
        dom, err = browser.dom(url)
        problems[f"{lang} dom"] = console_problems(err)
        assert all(text in dom for text in expected), dom
        assert '<form method="post" action="/feedback/shop">' in dom and "<script" not in dom
    assert not any(problems.values()), problems
    # what the browser posts when the person presses Send (a form post: Chromium's command line cannot press it)
    fields = {
        "t": FORM_TOKEN,
        "lang": "en",
        "summary": "Export is empty",
        "category": "bug",
        "reporter": "ann@acme.example",
    }
    sent = httpx.post(f"{intake.url}/feedback/shop", data=fields, timeout=10)
    assert sent.status_code == 201, sent.text
    ref = re.search(r"FB-[0-9A-F]{8}", sent.text)
    assert ref is not None
    thanks = tmp_path / "thanks.html"
    thanks.write_text(sent.text)
    dom, err = browser.dom(thanks.as_uri())
    assert ref.group(0) in dom and not console_problems(err)
    events = asyncio.run(read_to_end(intake.bootstrap, intake.topics.events, InboundEvent))
    assert [e.labels.get("reference") for e in events] == [ref.group(0)]
