"""The public feedback form: the page in both languages, the token, the submission as a feedback event with its
reference, a form that does not validate shown again (escaped), and its rate limit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from services.intake.api import create_app
from services.intake.config import IntakeConfig
from services.intake.edge import IntakeDeps
from services.intake.feedback_form import language, reference
from shared.events import Change, EventKind, InboundEvent, TicketEvent, TicketState
from shared.store import db
from shared.streaming.topics import Topics
from tests.fakes import FakePublisher
from tests.unit.factories import T0, ticket

FORM_TOKEN = "shop-form-token-0123456789"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, FakePublisher]]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 't.db'}")
    db.init_db(engine)
    form = {"name": "shop", "token": FORM_TOKEN, "title": "ACME shop", "customer": "acme"}
    config = IntakeConfig.model_validate({"forms": [{**form, "rate_limit": {"requests": 3, "per": "1h"}}]})
    publisher = FakePublisher()
    app = create_app(IntakeDeps(config, publisher, engine, Topics("t.", 2), CollectorRegistry()))
    with TestClient(app) as c:
        yield c, publisher


def test_the_form_shows_in_english_or_chinese_with_no_script_and_a_wrong_token_is_refused(
    client: tuple[TestClient, FakePublisher],
) -> None:
    http, _ = client
    en = http.get(f"/feedback/shop?t={FORM_TOKEN}")
    assert en.status_code == 200 and '<html lang="en">' in en.text and "Report a problem · ACME shop" in en.text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in en.text
    assert "<script" not in en.text and en.headers["referrer-policy"] == "no-referrer"
    zh = http.get(f"/feedback/shop?t={FORM_TOKEN}", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"})
    assert '<html lang="zh-CN">' in zh.text and "反馈问题" in zh.text and "功能故障" in zh.text
    assert "反馈问题" in http.get(f"/feedback/shop?t={FORM_TOKEN}&lang=zh-CN").text
    for path in ("/feedback/shop?t=wrong", "/feedback/shop", f"/feedback/other?t={FORM_TOKEN}"):
        refused = http.get(path)
        assert refused.status_code == 403 and "not valid" in refused.text
    assert language(None, "zh-TW") == "zh-CN" and language("en", "zh") == "en" and language(None, None) == "en"


def test_a_sent_form_is_a_feedback_event_with_a_reference_and_a_bad_one_comes_back_escaped(
    client: tuple[TestClient, FakePublisher],
) -> None:
    http, publisher = client
    fields = {
        "t": FORM_TOKEN,
        "summary": "发票无法下载",
        "category": "bug",
        "details": "点击后空白",
        "reporter": "li@acme.cn",
    }
    sent = http.post("/feedback/shop", data={**fields, "lang": "zh-CN"})
    assert sent.status_code == 201 and "谢谢" in sent.text
    [record] = publisher.records
    ev = InboundEvent.model_validate_json(record.value)
    assert ev.kind is EventKind.feedback and ev.summary == "发票无法下载" and ev.annotations["details"] == "点击后空白"
    assert ev.labels == {
        "project": "shop",
        "customer": "acme",
        "category": "bug",
        "reporter": "li@acme.cn",
        "reference": reference("shop", ev.event_id),
    }
    assert ev.labels["reference"] in sent.text and ev.source == "form-shop"
    bad = http.post("/feedback/shop", data={**fields, "summary": "", "details": "<script>alert(1)</script>"})
    assert bad.status_code == 422 and "&lt;script&gt;alert(1)&lt;/script&gt;" in bad.text and "<script>" not in bad.text
    forged = http.post("/feedback/shop", data={**fields, "t": "guess"})
    assert forged.status_code == 403
    assert len(publisher.records) == 1


def test_a_forms_rate_limit_answers_429_with_retry_after(client: tuple[TestClient, FakePublisher]) -> None:
    http, publisher = client
    fields = {"t": FORM_TOKEN, "summary": "slow", "reporter": "bo@acme.example"}
    answers = [http.post("/feedback/shop", data=fields) for _ in range(4)]
    assert [a.status_code for a in answers] == [201, 201, 201, 429]
    assert int(answers[3].headers["retry-after"]) > 1000 and "Too many reports" in answers[3].text
    assert len(publisher.records) == 3


def test_a_reporter_follows_a_report_to_its_ticket_number_and_state(tmp_path: Path) -> None:
    """The thanks page links to the report's status page (the form's token): before the ticket is filed it says
    so; then it shows the ticket number to quote in a mail, its state and last change, and nothing internal."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 't.db'}")
    db.init_db(engine)
    config = IntakeConfig.model_validate({"forms": [{"name": "shop", "token": FORM_TOKEN}]})
    publisher = FakePublisher()
    app = create_app(IntakeDeps(config, publisher, engine, Topics("t.", 2), CollectorRegistry()))
    with TestClient(app) as http:
        fields = {"t": FORM_TOKEN, "summary": "Invoice PDF is empty", "category": "bug", "reporter": "li@acme.cn"}
        sent = http.post("/feedback/shop", data=fields)
        [record] = publisher.records
        ev = InboundEvent.model_validate_json(record.value)
        ref = ev.labels["reference"]
        follow = f"/feedback/shop/status/{ref}?t={FORM_TOKEN}&amp;lang=en"
        assert follow in sent.text, "the thanks page links to the status page"
        status = follow.replace("&amp;", "&")
        assert "being filed" in http.get(status).text
        opened = ticket(ticket_id="tl-00000000000000ab", dedup_key=ev.dedup_key, summary="internal: checkout-7 down")
        acked = opened.model_copy(
            update={"state": TicketState.acknowledged, "acknowledged_at": T0 + timedelta(minutes=5), "version": 2}
        )
        db.project(
            engine, [TicketEvent(change_id="c1", change=Change.opened, actor="r", at=T0, ticket=opened, trace_id="t")]
        )
        db.project(
            engine,
            [TicketEvent(change_id="c2", change=Change.acknowledged, actor="ian", at=T0, ticket=acked, trace_id="t")],
        )
        page = http.get(status)
        assert page.status_code == 200
        assert "tl-00000000000000ab" in page.text and "someone is working on it" in page.text
        assert (T0 + timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M UTC") in page.text
        assert "checkout-7" not in page.text and "ian" not in page.text, "nothing internal"
        zh = http.get(status.replace("lang=en", "lang=zh-CN"))
        assert "处理中" in zh.text and '<html lang="zh-CN">' in zh.text
        assert http.get(f"/feedback/shop/status/{ref}?t=wrong").status_code == 403
        assert http.get(f"/feedback/shop/status/not-a-reference?t={FORM_TOKEN}").status_code == 404
