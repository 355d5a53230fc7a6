"""The satisfaction survey end to end: a customer's report is resolved, the reporter gets the survey by email (a
real SMTP server), answers through its link on intake's page, changes the answer, and the index moves in the API
and the metrics (intake, router and notifier as processes on the real broker)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.local.kafka_local import free_port
from deploy.local.sinks import SmtpSink
from deploy.local.stack import Stack
from tests.support.configs import API_TOKEN, GEN_TOKEN, write_config
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

REPORTER = "ann@acme.example"
PROJECTS = """
projects:
  - name: webshop
    customer: acme
    matchers: ['customer="acme"']
    go_live: {go_live}
    implementation: {team: web-team, engineers: [ian]}
    operations: {team: operations}
    satisfaction: {index: 0.9, within: 180d, no_p1: true}
"""
_NONCE = re.compile(r'name="n" value="([^"]+)"')


def answer(http: httpx.Client, link: str, score: int, comment: str) -> httpx.Response:
    """What the reporter's browser does: open the link, then send the form with a score and a comment."""
    page = http.get(link)
    assert page.status_code == 200, page.text
    match = _NONCE.search(page.text)
    assert match is not None
    return http.post(
        link.split("?", maxsplit=1)[0], data={"score": str(score), "comment": comment, "n": match.group(1)}
    )


def test_a_resolved_report_is_rated_through_the_mailed_survey(kafka_bootstrap: str, tmp_path: Path) -> None:
    smtp = SmtpSink(port=free_port()).start()
    go_live = (datetime.now(UTC) - timedelta(days=40)).isoformat()
    stack = Stack(
        bootstrap=kafka_bootstrap,
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        config_dir=write_config(tmp_path, projects=PROJECTS.replace("{go_live}", go_live)),
        workdir=tmp_path / "logs",
        intake_port=free_port(),
        smtp_port=smtp.port,
        extra_env={"TICKETLOOP_TOPIC_PREFIX": f"e2e-survey-{time.time_ns()}."},
    )
    for service in ("intake", "router", "notifier"):
        stack.start(service)
    api = httpx.Client(base_url=stack.intake_url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)
    browser = httpx.Client(timeout=10)
    try:
        stack.wait_ready()
        sent = httpx.post(
            f"{stack.intake_url}/api/v1/integrations/portal",
            json={
                "summary": "Order history is blank",
                "kind": "feedback",
                "reporter": REPORTER,
                "labels": {"customer": "acme", "category": "bug"},
            },
            headers={"Authorization": f"Bearer {GEN_TOKEN}"},
            timeout=10,
        )
        assert sent.status_code == 202
        tickets = wait_for("the report's ticket", lambda: api.get("/api/v1/tickets").json()["tickets"], stack=stack)
        ticket_id = tickets[0]["ticket_id"]
        assert api.post(f"/api/v1/tickets/{ticket_id}/resolve", json={"reason": "fixed"}).status_code == 202

        def survey_mail() -> list[Any]:
            return [m for m in smtp.received() if REPORTER in m.recipients and "How did we do?" in m.subject]

        [mail] = wait_for("the survey mail to the reporter", survey_mail, stack=stack)
        body = mail.message.get_content()
        links = dict(re.findall(r"(\d) - [^\n]*?(http://\S+/survey/\S+\?score=\d)", body))
        assert sorted(links) == ["1", "2", "3", "4", "5"] and ticket_id in mail.subject
        assert "非常满意" in body

        chosen = browser.get(links["4"])
        assert 'value="4" required checked' in chosen.text and "Order history is blank" in chosen.text
        first = answer(browser, links["4"], 4, "quick fix, thanks")
        assert first.status_code == 202 and "4/5" in first.text

        def figures(answered: int, index: float) -> dict[str, Any] | None:
            body = api.get("/api/v1/satisfaction", params={"by": "project"}).json()
            groups = [g for g in body["groups"] if g["key"] == "webshop"]
            got = groups and (groups[0]["answers"], groups[0]["index"]) == (answered, index)
            return body if got else None

        report = wait_for("the answer in the satisfaction index", lambda: figures(1, 1.0), stack=stack)
        [goal] = report["goals"]
        assert (goal["project"], goal["status"], goal["answers"]) == ("webshop", "on_track", 1)
        scraped = httpx.get(f"{stack.intake_url}/metrics", timeout=10).text
        assert 'ticketloop_satisfaction_index_ratio{customer="acme",project="webshop",team="operations"} 1.0' in scraped

        changed = answer(browser, links["5"], 2, "it broke again the next day")
        assert changed.status_code == 202
        wait_for("the changed answer replacing the first", lambda: figures(1, 0.0), stack=stack)
        timeline = api.get(f"/api/v1/tickets/{ticket_id}").json()["timeline"]
        rated = [(e["actor"], e["reason"]) for e in timeline if e["change"] == "rated"]
        assert rated == [
            (REPORTER, "rated 4/5: quick fix, thanks"),
            (REPORTER, "rated 2/5: it broke again the next day"),
        ]
        acted = browser.post(links["4"].split("?")[0].replace("/survey/", "/act/"))
        assert acted.status_code == 403, "a survey link does not act on the ticket"
    finally:
        api.close()
        browser.close()
        stack.stop_all()
        smtp.stop()
    assert len(survey_mail()) == 1
