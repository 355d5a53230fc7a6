"""The satisfaction survey at intake: the page (both languages, the mailed score chosen, no script), an answer as
the reporter's ``rate`` command, the links it refuses, the survey mail, and the satisfaction API with a project's
goal; on SQLite with the fake publisher (the real broker: tests/e2e/test_survey.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr, ValidationError
from sqlalchemy import Engine
from starlette.testclient import TestClient

from services.intake.api import create_app
from services.intake.config import IntakeConfig
from services.intake.edge import IntakeDeps, loggable_path
from services.intake.survey import SurveyForm
from services.notifier.pipeline import notices_for_ticket_event
from services.router.commands import apply_command
from services.router.lifecycle import TicketRecord
from services.router.projects import ProjectsConfig
from shared.events import Action, Change, Command, EventKind, TicketEvent, TicketState
from shared.infra import actionlinks
from shared.infra.config import ConfigWatcher
from shared.rules.satisfaction import SURVEY_WINDOW, rating_text
from shared.store import db
from shared.streaming.topics import Topics
from tests.fakes import FakePublisher
from tests.unit.factories import ticket

KEYS = actionlinks.LinkKeys((SecretStr("survey-test-key-0123456789"),))
API_TOKEN = "viewer-token-0123456789abcdef"
NOW = datetime.now(UTC).replace(microsecond=0)
REPORTER = "ann@acme.example"
PROJECTS = """
projects:
  - name: webshop
    customer: acme
    matchers: ['customer="acme"']
    go_live: {go_live}
    implementation: {{team: implementation}}
    operations: {{team: operations}}
    satisfaction: {{index: 0.75, within: 180d, no_p1: true}}
"""


@dataclass
class Intake:
    http: TestClient
    publisher: FakePublisher
    engine: Engine


def resolved_report(ticket_id: str = "tl-1", state: TicketState = TicketState.resolved, **over: object) -> TicketEvent:
    t = ticket(
        ticket_id=ticket_id,
        kind=EventKind.feedback,
        state=state,
        summary="invoice <b>download</b> fails",
        resolved_at=NOW - timedelta(hours=1),
        labels={"reporter": REPORTER, "category": "bug"},
        project="webshop",
        customer="acme",
        priority="P3",
        opened_at=NOW - timedelta(hours=3),
        version=3,
        **over,
    )
    return TicketEvent(change_id=f"{ticket_id}:3", change=Change.resolved, actor="olga", at=NOW, ticket=t, trace_id="t")


@pytest.fixture
def intake(tmp_path: Path) -> Iterator[Intake]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 't.db'}")
    db.init_db(engine)
    projects = tmp_path / "projects.yaml"
    projects.write_text(PROJECTS.format(go_live=(NOW - timedelta(days=10)).isoformat()))
    config = IntakeConfig.model_validate({"api_clients": [{"name": "viewer", "token": API_TOKEN, "role": "viewer"}]})
    publisher = FakePublisher()
    deps = IntakeDeps(
        config,
        publisher,
        engine,
        Topics("t.", 2),
        CollectorRegistry(),
        link_keys=KEYS,
        projects=ConfigWatcher(projects, ProjectsConfig),
    )
    with TestClient(create_app(deps)) as http:
        yield Intake(http, publisher, engine)


def survey_link(ticket_id: str = "tl-1", expires: datetime | None = None, action: str = "survey") -> str:
    token = actionlinks.issue(KEYS, ticket_id, action, REPORTER, expires or NOW + SURVEY_WINDOW)  # type: ignore[arg-type]
    return urlsplit(actionlinks.survey_url("http://x", token)).path


def test_the_page_shows_the_mailed_score_chosen_in_either_language_and_changes_nothing(intake: Intake) -> None:
    db.project(intake.engine, [resolved_report()])
    page = intake.http.get(survey_link() + "?score=4")
    assert page.status_code == 200 and '<html lang="en">' in page.text
    assert 'value="4" required checked' in page.text and 'value="5" required>' in page.text
    assert "invoice &lt;b&gt;download&lt;/b&gt; fails" in page.text and "<script" not in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    zh = intake.http.get(survey_link(), headers={"Accept-Language": "zh-CN"})
    assert '<html lang="zh-CN">' in zh.text and "服务满意度调查" in zh.text and "非常满意" in zh.text
    assert intake.publisher.records == []


def test_an_answer_is_the_reporters_rate_command_and_a_form_sent_twice_is_one_answer(intake: Intake) -> None:
    db.project(intake.engine, [resolved_report()])
    link = survey_link()
    form = {"score": "2", "comment": "took three days", "n": "nonce-0001", "lang": "en"}
    first = intake.http.post(link, data=form)
    assert first.status_code == 202 and "We recorded 2/5" in first.text
    again = intake.http.post(link, data=form)
    assert again.status_code == 202
    commands = [Command.model_validate_json(r.value) for r in intake.publisher.records]
    assert {(c.action, c.actor, c.score, c.reason, c.ticket_id) for c in commands} == {
        (Action.rate, REPORTER, 2, "took three days", "tl-1")
    }
    assert len({c.command_id for c in commands}) == 1, "the same page's answer sent twice is one command"
    assert {r.key for r in intake.publisher.records} == {"tl-1"}
    changed = intake.http.post(link, data={**form, "score": "5", "n": "nonce-0002"})
    assert changed.status_code == 202
    assert Command.model_validate_json(intake.publisher.records[-1].value).command_id != commands[0].command_id


def test_a_bad_answer_is_shown_again_and_nothing_is_sent(intake: Intake) -> None:
    db.project(intake.engine, [resolved_report()])
    for form in ({"score": "9", "n": "nonce-0001"}, {"score": "3", "n": "x"}, {"comment": "<i>no score</i>"}):
        bad = intake.http.post(survey_link(), data={"n": "nonce-0001", **form})
        assert bad.status_code == 422 and "choose a score" in bad.text and "<i>" not in bad.text
    assert intake.publisher.records == []


def test_links_the_survey_refuses(intake: Intake) -> None:
    db.project(intake.engine, [resolved_report(), resolved_report("tl-2", TicketState.open)])
    expired = intake.http.get(survey_link(expires=NOW - timedelta(seconds=1)))
    assert expired.status_code == 410 and "closed" in expired.text
    assert intake.http.get(survey_link(action="resolve")).status_code == 403
    token = survey_link().rsplit("/", 1)[1]
    forged = intake.http.get(f"/survey/{token[:-2]}xx")
    assert forged.status_code == 403 and "not valid" in forged.text
    assert intake.http.get(survey_link("tl-404")).status_code == 404
    reopened = intake.http.post(survey_link("tl-2"), data={"score": "1", "n": "nonce-0001"})
    assert reopened.status_code == 409 and "reopened" in reopened.text
    acted = intake.http.post(f"/act/{token}")
    assert acted.status_code == 403, "a survey link never acts on /act/"
    assert intake.publisher.records == []


def test_the_survey_is_mailed_to_the_reporter_of_a_resolved_report_only() -> None:
    made: list[tuple[str, str, datetime, int]] = []

    def link(ticket_id: str, person: str, closes: datetime, score: int) -> str:
        made.append((ticket_id, person, closes, score))
        return f"http://x/survey/tok?score={score}"

    ev = resolved_report()
    [survey] = [n for n in notices_for_ticket_event(ev, "http://x", link) if n.message.kind == "survey"]
    assert survey.recipients == (("email", REPORTER),)
    assert [a.url for a in survey.message.actions] == [f"http://x/survey/tok?score={s}" for s in (5, 4, 3, 2, 1)]
    assert "非常满意" in survey.message.actions[0].label and "How did we do?" in survey.message.subject
    assert {(t, p, c) for t, p, c, _ in made} == {("tl-1", REPORTER, ev.ticket.resolved_at + SURVEY_WINDOW)}  # type: ignore[operator]
    alert = ev.model_copy(update={"ticket": ev.ticket.model_copy(update={"kind": EventKind.alert})})
    phone = ev.model_copy(update={"ticket": ev.ticket.model_copy(update={"labels": {"reporter": "+86 138"}})})
    acked = ev.model_copy(update={"change": Change.acknowledged})
    for other in (alert, phone, acked):
        assert not [n for n in notices_for_ticket_event(other, "http://x", link) if n.message.kind == "survey"]
    assert not [n for n in notices_for_ticket_event(ev, "http://x", None) if n.message.kind == "survey"]


def rated(ticket_id: str, score: int, *, team: str = "operations", priority: str = "P3") -> TicketEvent:
    ev = resolved_report(ticket_id, team=team)
    t = ev.ticket.model_copy(update={"rating": score, "rated_at": NOW, "version": 4, "priority": priority})
    return ev.model_copy(update={"change": Change.rated, "ticket": t, "reason": rating_text(score, "")})


def test_the_api_gives_the_index_by_group_and_each_projects_goal(intake: Intake) -> None:
    answers = [rated("a", 5), rated("b", 4), rated("c", 2, team="implementation"), rated("d", 4)]
    db.project(intake.engine, answers)
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    body = intake.http.get("/api/v1/satisfaction?by=team", headers=auth).json()
    assert body["groups"] == [
        {"key": "implementation", "answers": 1, "satisfied": 0, "index": 0.0},
        {"key": "operations", "answers": 3, "satisfied": 3, "index": 1.0},
    ]
    [goal] = body["goals"]
    assert (goal["project"], goal["answers"], goal["index"], goal["status"]) == ("webshop", 4, 0.75, "on_track")
    assert goal["goal"] == {"index": 0.75, "within_days": 180.0, "no_p1": True}
    db.project(intake.engine, [rated("e", 3, priority="P1")])
    goal = intake.http.get("/api/v1/satisfaction", headers=auth).json()["goals"][0]
    assert (goal["status"], goal["p1_tickets"]) == ("missed", 1) and "P1" in goal["why"]
    later = (NOW + timedelta(days=1)).isoformat()
    assert intake.http.get("/api/v1/satisfaction", params={"since": later}, headers=auth).status_code == 422
    assert intake.http.get("/api/v1/satisfaction?by=planet", headers=auth).status_code == 422
    assert intake.http.get("/api/v1/satisfaction").status_code == 401
    scraped = intake.http.get("/metrics").text
    assert 'ticketloop_satisfaction_index_ratio{customer="acme",project="webshop",team="operations"} 0.75' in scraped
    assert 'ticketloop_satisfaction_answers_count{customer="acme",project="webshop",team="implementation"} 1.0' in (
        scraped
    )


def apply_all(intake: Intake) -> TicketRecord:
    rec = TicketRecord(ticket=resolved_report().ticket, seen=[])
    for r in intake.publisher.records:
        rec, _ = apply_command(rec, Command.model_validate_json(r.value), NOW)
    return rec


def test_an_answer_changed_on_the_same_page_is_recorded_as_the_thanks_page_says(intake: Intake) -> None:
    db.project(intake.engine, [resolved_report()])
    link = survey_link()
    first = intake.http.post(link, data={"score": "3", "n": "nonce-0001"})
    second = intake.http.post(link, data={"score": "5", "comment": "actually fine", "n": "nonce-0001"})
    assert first.status_code == second.status_code == 202 and "We recorded 5/5" in second.text
    assert apply_all(intake).ticket.rating == 5


def test_the_page_nonce_is_a_short_token_and_a_comment_keeps_no_control_characters(intake: Intake) -> None:
    for n in ("x" * 5_000 + "nonce-0001", "nonce-0001\n<b>:anything", "short!! but 8 chars: abcdefgh"):
        with pytest.raises(ValidationError):
            SurveyForm.model_validate({"score": "4", "n": n})
    assert SurveyForm.model_validate({"score": 4, "n": "nonce-0001", "comment": "a\x00b\x1bc\nd\te"}).comment == (
        "abc\nd\te"
    )
    db.project(intake.engine, [resolved_report()])
    assert intake.http.post(survey_link(), data={"score": "4", "n": "a" * 90_000}).status_code == 422
    assert intake.publisher.records == []


def test_a_survey_token_is_never_logged() -> None:
    token = survey_link().rsplit("/", 1)[1]
    assert token not in loggable_path(f"/survey/{token}") and loggable_path(f"/survey/{token}") == "/survey/…"


def test_a_form_with_too_many_fields_is_a_4xx_not_a_500(intake: Intake) -> None:
    db.project(intake.engine, [resolved_report()])
    body = "&".join(f"f{i}=x" for i in range(60)) + "&score=4&n=nonce-0001"
    answer = intake.http.post(
        survey_link(), content=body, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert answer.status_code == 422 and intake.publisher.records == []


def test_a_tickets_survey_takes_a_bounded_number_of_answers_an_hour(intake: Intake) -> None:
    db.project(intake.engine, [resolved_report()])
    codes = [intake.http.post(survey_link(), data={"score": "4", "n": f"nonce-{i:04}"}).status_code for i in range(11)]
    assert codes == [202] * 10 + [429]
    assert len(intake.publisher.records) == 10
