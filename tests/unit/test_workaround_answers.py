"""A reporter's "this solved it / it did not" about a suggested workaround: the links in the mail, the page, the
command and what the router records, and the tally per known issue (timeline, metrics)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from sqlalchemy import Engine
from starlette.testclient import TestClient

from services.intake.api import create_app
from services.intake.config import IntakeConfig
from services.intake.edge import IntakeDeps, loggable_path
from services.notifier.pipeline import notices_for_ticket_event
from services.router.commands import apply_command
from services.router.lifecycle import TicketRecord
from shared.events import Action, Change, Command, EventKind, TicketEvent, TicketState
from shared.infra import actionlinks
from shared.rules.workarounds import IssueTally, said_solved, said_text, tally
from shared.store import db
from shared.streaming.topics import Topics
from tests.fakes import FakePublisher
from tests.unit.factories import ticket

KEYS = actionlinks.LinkKeys((SecretStr("solved-test-key-0123456789"),))
NOW = datetime.now(UTC).replace(microsecond=0)
REPORTER = "ann@acme.example"


def report(known_issue: str | None = "WEB-12", ticket_id: str = "tl-1") -> TicketEvent:
    t = ticket(
        ticket_id=ticket_id,
        kind=EventKind.feedback,
        summary="checkout <b>broken</b>",
        labels={"reporter": REPORTER},
        project="webshop",
        known_issue=known_issue,
        opened_at=NOW,
    )
    return TicketEvent(
        change_id=f"{ticket_id}:1",
        change=Change.opened,
        actor="router",
        at=NOW,
        ticket=t,
        trace_id="t",
        workaround="known issue WEB-12 (...). Workaround: use the app" if known_issue else None,
        notify_reporter=known_issue is not None,
    )


@dataclass
class Intake:
    http: TestClient
    publisher: FakePublisher
    engine: Engine


@pytest.fixture
def intake(tmp_path: Path) -> Iterator[Intake]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 't.db'}")
    db.init_db(engine)
    publisher = FakePublisher()
    deps = IntakeDeps(IntakeConfig(), publisher, engine, Topics("t.", 2), CollectorRegistry(), link_keys=KEYS)
    with TestClient(create_app(deps)) as http:
        yield Intake(http, publisher, engine)


def link(ticket_id: str = "tl-1", action: str = "solved", expires: datetime | None = None) -> str:
    token = actionlinks.issue(KEYS, ticket_id, action, REPORTER, expires or NOW + timedelta(days=14))  # type: ignore[arg-type]
    return urlsplit(actionlinks.solved_url("http://x", token, True)).path


def test_the_workaround_mail_carries_the_two_answers_for_its_reporter() -> None:
    made: list[tuple[str, str, bool]] = []

    def solved(ticket_id: str, person: str, yes: bool) -> str:
        made.append((ticket_id, person, yes))
        return f"http://x/solved/tok?answer={'yes' if yes else 'no'}"

    [mail] = [n for n in notices_for_ticket_event(report(), "http://x", None, solved) if n.message.kind == "workaround"]
    assert mail.recipients == (("email", REPORTER),)
    assert [(a.label, a.url) for a in mail.message.actions] == [
        ("Yes, this solved it / 已解决", "http://x/solved/tok?answer=yes"),
        ("No, it did not / 未解决", "http://x/solved/tok?answer=no"),
    ]
    assert made == [("tl-1", REPORTER, True), ("tl-1", REPORTER, False)]
    [plain] = [n for n in notices_for_ticket_event(report(), "http://x") if n.message.kind == "workaround"]
    assert plain.message.actions == ()


def test_the_page_changes_nothing_and_an_answer_is_the_reporters_command(intake: Intake) -> None:
    db.project(intake.engine, [report()])
    page = intake.http.get(link() + "?answer=no", headers={"Accept-Language": "zh-CN"})
    assert page.status_code == 200 and "没有，未解决" in page.text and "✔ 没有，未解决" in page.text
    assert "checkout &lt;b&gt;broken&lt;/b&gt;" in page.text and "<script" not in page.text
    assert intake.publisher.records == []
    mine = link()
    for answer in ("yes", "yes", "no"):
        assert intake.http.post(mine, data={"answer": answer, "n": "page-0001"}).status_code == 202
    commands = [Command.model_validate_json(r.value) for r in intake.publisher.records]
    assert [(c.action, c.actor, c.solved) for c in commands] == [(Action.answer_workaround, REPORTER, True)] * 2 + [
        (Action.answer_workaround, REPORTER, False)
    ]
    assert len({c.command_id for c in commands}) == 2, "the same page's answer twice is one command"
    assert intake.http.post(link(), data={"answer": "maybe", "n": "page-0001"}).status_code == 422
    assert intake.http.post(link(), data={"answer": "yes", "n": "x" * 500}).status_code == 422
    assert loggable_path(link()) == "/solved/…"


def test_links_the_page_refuses(intake: Intake) -> None:
    db.project(intake.engine, [report(), report(None, "tl-2")])
    assert intake.http.get(link(expires=NOW - timedelta(seconds=1))).status_code == 410
    assert intake.http.get(link(action="survey")).status_code == 403
    assert intake.http.get(link("tl-2")).status_code == 404, "no workaround was suggested for tl-2"
    assert intake.http.get(link("tl-404")).status_code == 404
    token = link().rsplit("/", 1)[1]
    assert intake.http.post(f"/act/{token}").status_code == 403, "an answer link never acts on the ticket"
    assert intake.publisher.records == []


def test_the_router_records_the_answer_and_refuses_one_for_a_ticket_without_a_workaround() -> None:
    def answer(solved: bool, cid: str) -> Command:
        return Command(
            command_id=cid,
            ticket_id="tl-1",
            action=Action.answer_workaround,
            actor=REPORTER,
            solved=solved,
            issued_at=NOW,
            trace_id="t",
        )

    rec = TicketRecord(ticket=report().ticket, seen=[])
    rec, [out] = apply_command(rec, answer(False, "a"), NOW)
    assert (out.change, out.actor, out.reason) == (
        Change.workaround_answered,
        REPORTER,
        "the reporter says the workaround of known issue WEB-12 did not solve it",
    )
    assert rec.ticket.state is TicketState.open, "the owner decides what follows"
    _, [refused] = apply_command(TicketRecord(ticket=report(None).ticket, seen=[]), answer(True, "b"), NOW)
    assert refused.change is Change.rejected and "no workaround" in refused.reason
    with pytest.raises(ValueError, match="needs 'solved'"):
        Command(command_id="c", ticket_id="t", action=Action.answer_workaround, actor="a", issued_at=NOW, trace_id="t")


def test_the_tally_per_known_issue_counts_each_reporters_last_word() -> None:
    assert said_solved(said_text("K", solved=True)) is True
    assert said_solved(said_text("K", solved=False)) is False
    assert said_solved("something else") is None
    answered = [("t1", "shop", "K1"), ("t2", "shop", "K1"), ("t3", "shop", "K2")]
    said = [
        ("t1", said_text("K1", solved=False)),
        ("t1", said_text("K1", solved=True)),
        ("t3", said_text("K2", solved=False)),
    ]
    assert tally(answered, said) == [IssueTally("shop", "K1", 2, 1, 0), IssueTally("shop", "K2", 1, 0, 1)]


def test_the_read_model_and_the_metrics_give_the_knowledge_base_statistics(intake: Intake) -> None:
    opened = report()
    answered = TicketEvent(
        change_id="tl-1:2",
        change=Change.workaround_answered,
        actor=REPORTER,
        reason=said_text("WEB-12", solved=True),
        at=NOW,
        ticket=opened.ticket.model_copy(update={"version": 2}),
        trace_id="t",
    )
    db.project(intake.engine, [opened, answered, report("WEB-12", "tl-2")])
    assert db.workaround_tally(intake.engine) == [IssueTally("webshop", "WEB-12", 2, 1, 0)]
    scraped = intake.http.get("/metrics").text
    assert 'ticketloop_knowledge_answered_count{known_issue="WEB-12",project="webshop"} 2.0' in scraped
    assert 'ticketloop_knowledge_workaround_answers_count{known_issue="WEB-12",project="webshop",solved="yes"} 1.0' in (
        scraped
    )


def test_the_reporters_newest_answer_counts_after_changing_their_mind_twice(intake: Intake) -> None:
    db.project(intake.engine, [report()])
    mine = link()
    for answer in ("yes", "no", "yes"):
        page = intake.http.get(mine)
        nonce = re.search(r'name="n" value="([^"]+)"', page.text)
        assert nonce is not None
        assert intake.http.post(mine, data={"answer": answer, "n": nonce.group(1)}).status_code == 202
    rec = TicketRecord(ticket=report().ticket, seen=[])
    said = []
    for r in intake.publisher.records:
        rec, out = apply_command(rec, Command.model_validate_json(r.value), NOW)
        said += [said_solved(o.reason) for o in out]
    assert said == [True, False, True]
