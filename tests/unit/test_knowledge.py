"""services/router/knowledge.py and shared/rules/similarity.py: which known issue a report is, in which order, and
the resolved tickets most like a new one. Pure functions; the models are fakes here (a segmenter that knows no
words, an embedding over a handful of concepts) except where jieba itself is the point."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry

from services.notifier.templates import for_reporter, render_assignment, render_workaround
from services.router.hop import TicketInput
from services.router.knowledge import (
    ResolvedTicket,
    answer,
    build_known_issue_index,
    index_resolved,
    known_issue_for,
    may_show,
    past_tickets,
    rank_known_issues,
    similar_tickets,
)
from services.router.projects import KnownIssue, ProjectsConfig
from services.router.rules import RoutingConfig
from services.router.service import RouterDeps, RouterProcessor
from services.router.steps import Config, ticket_step
from shared.events import Change, EventKind, TicketEvent, TicketState
from shared.infra.config import ConfigWatcher
from shared.rules.oncall import TeamsConfig
from shared.rules.similarity import (
    TextModels,
    Vectors,
    build_index,
    char_segment,
    load_text_models,
    similarities,
    tokens,
)
from shared.store import db
from shared.streaming.topics import Topics
from tests.unit.factories import T0, event, ticket

CONCEPTS = {
    "pay": ("pay", "paid", "charged", "付款", "支付", "扣款"),
    "login": ("login", "log in", "sign in", "登录"),
    "photo": ("photo", "picture", "照片", "图片"),
}


def concept_embed(texts: Sequence[str]) -> Vectors:
    """A fake embedding: one axis per concept a text mentions, unit length (zeros when it mentions none)."""
    rows = []
    for text in texts:
        v = np.array([float(any(w in text.lower() for w in words)) for words in CONCEPTS.values()])
        norm = np.linalg.norm(v)
        rows.append(v / norm if norm else v)
    return np.array(rows)


LEXICAL = TextModels(char_segment)
BOTH = TextModels(char_segment, concept_embed, "fake")

PROJECTS = ProjectsConfig.model_validate(
    {
        "projects": [
            {
                "name": "webshop",
                "customer": "acme",
                "matchers": ['customer="acme"'],
                "go_live": "2026-11-01T00:00:00Z",
                "implementation": {"team": "impl", "engineers": ["ian"]},
                "operations": {"team": "ops"},
                "known_issues": [
                    {
                        "id": "PAY",
                        "title": "Order stays awaiting payment after paying",
                        "description": "The order was paid but still shows unpaid. 已经付款但订单仍显示待付款。",
                        "keywords": ["awaiting payment"],
                        "workaround": "Wait 15 minutes; do not pay twice.",
                        "reply_to_reporter": True,
                    },
                    {
                        "id": "SSO",
                        "title": "Company single sign-on loops back to the login page",
                        "description": "企业账号登录后反复跳回登录页。",
                        "keywords": ["sso"],
                        "workaround": "Sign in with email and password.",
                    },
                    {
                        "id": "PHOTO",
                        "title": "Review photos from iPhone fail to upload",
                        "description": "评价里上传苹果手机拍的照片失败。",
                        "keywords": ["heic"],
                        "matchers": ['category!="suggestion"'],
                        "workaround": "Share the photo as JPEG first.",
                    },
                ],
            }
        ]
    }
)
ISSUES = PROJECTS.projects[0].known_issues
ACME = {"customer": "acme", "category": "bug"}


def ids(ranked: Sequence[object]) -> list[str]:
    return [s.issue.id for s in ranked]  # type: ignore[attr-defined]


def test_an_issue_whose_label_matchers_fail_is_never_suggested_not_even_by_its_keyword() -> None:
    index = build_known_issue_index(PROJECTS, BOTH)
    for text in ("heic photo upload fails", "评价里上传照片失败"):
        assert "PHOTO" in ids(rank_known_issues(ISSUES, ACME, text, index, "webshop"))
        ranked = rank_known_issues(ISSUES, {**ACME, "category": "suggestion"}, text, index, "webshop")
        assert "PHOTO" not in ids(ranked)


def test_a_keyword_match_ranks_first_whatever_the_similarity_of_the_others() -> None:
    index = build_known_issue_index(PROJECTS, BOTH)
    # reads like the payment issue in every word but one, and names the SSO issue's keyword
    text = "The order was paid but still shows unpaid, since the SSO change"
    ranked = rank_known_issues(ISSUES, ACME, text, index, "webshop")
    assert ids(ranked)[:2] == ["SSO", "PAY"]
    assert (ranked[0].how, ranked[0].keyword, ranked[0].score) == ("keyword", "sso", 1.0)
    assert ranked[1].how in ("lexical", "semantic") and ranked[1].score < 1.0
    assert answer(ranked) == ranked[0]


def test_without_an_index_only_rules_match_as_before() -> None:
    assert ids(rank_known_issues(ISSUES, ACME, "Paid, order not confirmed", None, "webshop")) == []
    assert ids(rank_known_issues(ISSUES, ACME, "still AWAITING PAYMENT", None, "webshop")) == ["PAY"]


def test_an_issue_without_keywords_matches_by_its_labels_alone() -> None:
    issue = KnownIssue(id="L", title="t", matchers=['browser="safari"'], workaround="w")
    [only] = rank_known_issues([issue], {"browser": "safari"}, "anything", None, "p")
    assert (only.how, only.score) == ("labels", 1.0)
    assert rank_known_issues([issue], {"browser": "firefox"}, "anything", None, "p") == []


def test_a_report_matched_by_meaning_is_answered_only_at_or_above_the_threshold() -> None:
    index = build_known_issue_index(PROJECTS, BOTH)
    ranked = rank_known_issues(ISSUES, ACME, "I was charged, the order is not confirmed", index, "webshop")
    first = ranked[0]
    assert first.issue.id == "PAY" and first.how == "semantic" and first.semantic == pytest.approx(1.0)
    assert answer(ranked, threshold=first.score) == first
    assert answer(ranked, threshold=first.score + 0.01) is None
    assert first.explain().startswith(f"suggested by similarity {first.score:.2f}, mostly semantic (lexical ")
    assert answer([]) is None


def test_chinese_is_compared_by_its_words_and_characters() -> None:
    assert tokens("Login 失败了", char_segment) == ["login", "失", "败"]  # 了 is a common character, left out
    jieba = load_text_models(embedding=False)
    words = tokens("苹果手机上点结算按钮没有反应", jieba.segment)
    assert {"苹果", "手机", "结算", "按钮", "反应"} <= set(words), "jieba's words"
    assert {"苹", "果", "结", "算"} <= set(words), "and every character"
    index = build_known_issue_index(PROJECTS, jieba)
    ranked = rank_known_issues(ISSUES, ACME, "用公司的企业账号登录，一直跳回登录页", index, "webshop")
    assert ranked[0].issue.id == "SSO" and ranked[0].how == "lexical"
    assert ids(ranked) == ["SSO"], "no keyword in it, and nothing else shares a word or character with it"
    # the same report cut into characters only shares fewer, longer-range matches: jieba's words add to it
    chars = build_known_issue_index(PROJECTS, LEXICAL)
    by_chars = rank_known_issues(ISSUES, ACME, "用公司的企业账号登录，一直跳回登录页", chars, "webshop")
    assert by_chars[0].issue.id == "SSO" and by_chars[0].score < ranked[0].score


def test_a_report_that_shares_one_word_with_an_issue_and_many_with_none_scores_low() -> None:
    index = build_index([("a", "order history page slow")], LEXICAL)
    [one] = similarities(index, "order", LEXICAL)
    [diluted] = similarities(index, "I want to change the delivery address of my order", LEXICAL)
    assert one.score > 10 * diluted.score > 0


def test_known_issue_for_answers_feedback_only_and_uses_only_the_index_of_its_configuration() -> None:
    index = build_known_issue_index(PROJECTS, BOTH)
    report = event(
        kind=EventKind.feedback,
        summary="Paid twice?",
        annotations={"details": "charged, still unpaid"},
        labels={"customer": "acme"},
    )
    found = known_issue_for(report, PROJECTS, index)
    assert found is not None and found.issue.id == "PAY" and found.project.name == "webshop"
    assert found.suggestion.how == "semantic"
    assert known_issue_for(report, PROJECTS, None) is None, "no keyword: nothing without the index"
    reloaded = ProjectsConfig.model_validate(PROJECTS.model_dump())
    assert known_issue_for(report, reloaded, index) is None, "an index of another load is not used"
    alert = event(summary="Paid twice? charged, still unpaid", labels={"customer": "acme"})
    assert known_issue_for(alert, PROJECTS, index) is None


def test_a_ticket_opened_by_a_match_by_meaning_says_so_on_its_timeline_and_the_mail_is_a_suggestion() -> None:
    routing = RoutingConfig.model_validate({"route": {"team": "ops"}})
    config = Config(routing, PROJECTS, TeamsConfig(), known=build_known_issue_index(PROJECTS, BOTH))
    ev = event(
        kind=EventKind.feedback,
        dedup_key="portal/1",
        summary="I was charged but the order is not confirmed",
        labels={"customer": "acme", "reporter": "ann@acme.example"},
    )
    _, _, [opened] = ticket_step(None, None, "tl-9", TicketInput(group_key=ev.dedup_key, event=ev), T0, config)
    assert opened.ticket.known_issue == "PAY" and opened.notify_reporter
    assert opened.workaround is not None
    assert opened.workaround.startswith("known issue PAY (Order stays awaiting payment after paying), suggested by ")
    assert ", mostly semantic (" in opened.workaround and "no keyword matched" in opened.workaround
    assert opened.workaround.endswith("Workaround: Wait 15 minutes; do not pay twice.")
    mail = render_workaround(opened, "http://tl")
    assert "suggestion" in mail.text and "may not fit your case" in mail.text
    assert "Order stays awaiting payment after paying\nWorkaround: Wait 15 minutes; do not pay twice." in mail.text
    assert "similarity" not in mail.text and "lexical" not in mail.text, "how it matched is for the timeline"


# -- similar past tickets ----------------------------------------------------------------------------------------

DAY = timedelta(days=1)
NOW = datetime(2026, 12, 1, tzinfo=UTC)
RESOLVED = [
    ResolvedTicket("t1", "Paid with Alipay, order still unpaid", NOW - 3 * DAY, "callback was late; updated by itself"),
    ResolvedTicket("t2", "Cannot log in with the company account", NOW - 2 * DAY, "cookies allowed"),
    ResolvedTicket("t3", "Order paid but shows unpaid", NOW - DAY, "known issue PAY"),
    ResolvedTicket("t4", "Photo upload fails in review", NOW - DAY, "sent as JPEG"),
    ResolvedTicket("t5", "charged twice for one order, unpaid shown", NOW - 5 * DAY, "refunded"),
    ResolvedTicket("t6", "付款后订单显示未支付", NOW - 4 * DAY, "回调延迟"),
]


def test_similar_tickets_are_the_three_most_alike_resolved_ones_best_first() -> None:
    index = index_resolved(RESOLVED, BOTH)
    found = similar_tickets("My order is paid but unpaid on the page", RESOLVED, index, BOTH)
    assert len(found) == 3
    assert [f.ticket.ticket_id for f in found[:2]] == ["t3", "t1"]
    assert {f.ticket.ticket_id for f in found} <= {"t1", "t3", "t5", "t6"}
    assert [f.score for f in found] == sorted((f.score for f in found), reverse=True)
    assert found[0].ticket.resolution == "known issue PAY"


def test_similar_tickets_leave_out_the_ticket_itself_and_what_is_not_alike_enough() -> None:
    index = index_resolved(RESOLVED, BOTH)
    text = "Order paid but shows unpaid"
    assert similar_tickets(text, RESOLVED, index, BOTH)[0].ticket.ticket_id == "t3"
    assert "t3" not in [f.ticket.ticket_id for f in similar_tickets(text, RESOLVED, index, BOTH, exclude="t3")]
    assert similar_tickets("The size chart is wrong", RESOLVED, index, BOTH) == []
    assert similar_tickets("anything", [], index_resolved([], BOTH), BOTH) == []


def test_equally_similar_tickets_go_most_recently_resolved_first() -> None:
    twins = [
        ResolvedTicket("old", "Photo upload fails", NOW - 9 * DAY),
        ResolvedTicket("new", "Photo upload fails", NOW - DAY),
    ]
    found = similar_tickets("photo upload fails", twins, index_resolved(twins, LEXICAL), LEXICAL, limit=1)
    assert [f.ticket.ticket_id for f in found] == ["new"]


def test_only_the_same_customers_resolved_tickets_are_offered_as_similar() -> None:
    mine = ResolvedTicket("a1", "Order paid but shows unpaid", NOW - 2 * DAY, "callback late", "acme")
    theirs = ResolvedTicket("g1", "Order paid but shows unpaid", NOW - DAY, "refunded by mistake", "globex")
    nobodys = ResolvedTicket("n1", "Order paid but shows unpaid", NOW - DAY, "internal test order")
    both = [mine, theirs, nobodys]
    index = index_resolved(both, LEXICAL)
    found = {c: similar_tickets("order paid unpaid", both, index, LEXICAL, customer=c) for c in ("acme", "globex")}
    assert [f.ticket.ticket_id for f in found["acme"]] == ["a1"], "globex's is more recent and as alike: not shown"
    assert [f.ticket.ticket_id for f in found["globex"]] == ["g1"]
    assert [f.ticket.ticket_id for f in similar_tickets("order paid unpaid", both, index, LEXICAL)] == ["n1"]
    assert similar_tickets("order paid unpaid", both, index, LEXICAL, customer="initech") == []
    assert may_show(mine, "acme") and not may_show(mine, "globex") and not may_show(mine, None)


def test_the_router_indexes_the_known_issues_once_per_load_of_projects_yaml(tmp_path: Path) -> None:
    (tmp_path / "routing.yaml").write_text("route:\n  team: ops\n")
    (tmp_path / "projects.yaml").write_text(yaml.safe_dump(PROJECTS.model_dump(mode="json", exclude_defaults=True)))
    built: list[int] = []

    def counting_embed(texts: Sequence[str]) -> Vectors:
        built.append(len(texts))
        return concept_embed(texts)

    deps = RouterDeps(
        Topics("u.", 1),
        ConfigWatcher(tmp_path / "routing.yaml", RoutingConfig),
        ConfigWatcher(tmp_path / "projects.yaml", ProjectsConfig),
        db.make_engine("sqlite://"),
        CollectorRegistry(),
        ConfigWatcher(tmp_path / "teams.yaml", TeamsConfig, optional=True),
        text_models=TextModels(char_segment, counting_embed),
    )
    processor = RouterProcessor(deps)
    first = processor.config().known
    assert first is not None and processor.config().known is first and built == [3], "indexed once, 3 issues"
    changed = PROJECTS.model_dump(mode="json", exclude_defaults=True)
    changed["projects"][0]["known_issues"].pop()
    (tmp_path / "projects.yaml").write_text(yaml.safe_dump(changed))
    assert deps.projects.poll() == "reloaded"
    second = processor.config().known
    assert second is not None and second is not first and built == [3, 2]
    no_models = RouterProcessor(replace(deps, text_models=None, registry=CollectorRegistry()))
    assert no_models.config().known is None


def test_a_new_ticket_opens_naming_the_most_similar_resolved_tickets_on_its_timeline_and_in_its_message(
    tmp_path: Path,
) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'rm.db'}")
    db.init_db(engine)
    done = [
        TicketEvent(
            change_id=f"{r.ticket_id}:2",
            change=Change.resolved,
            actor="olga",
            reason=r.resolution,
            at=r.resolved_at,
            ticket=ticket(
                ticket_id=r.ticket_id,
                summary=r.summary,
                state=TicketState.resolved,
                resolved_at=r.resolved_at,
                version=2,
            ),
            trace_id="t",
        )
        for r in RESOLVED
    ]
    db.project(engine, done)
    rows = db.resolved_tickets(engine)
    assert sorted(r[0] for r in rows) == ["t1", "t2", "t3", "t4", "t5", "t6"]
    assert [r[2] for r in rows] == sorted((r[2] for r in rows), reverse=True), "most recently resolved first"
    assert {r[0]: r[3] for r in rows}["t3"] == "by olga: known issue PAY"
    past = past_tickets(rows, BOTH)
    config = Config(
        RoutingConfig.model_validate({"route": {"team": "ops"}}), ProjectsConfig(), TeamsConfig(), [], None, past
    )
    report = event(event_id="n1", kind=EventKind.feedback, dedup_key="p/n1", summary="My order is paid but unpaid")
    item = TicketInput(event=report, group_key="p/n1", decision=None)
    _, _, [opened] = ticket_step(None, None, "tl-new", item, NOW, config)
    assert opened.change is Change.opened and len(opened.similar) == 3
    assert opened.similar[0].startswith("t3 (Order paid but shows unpaid), resolved ")
    assert "by olga: known issue PAY [similarity " in opened.similar[0]
    db.project(engine, [opened])
    found = db.get_ticket(engine, "tl-new")
    assert found is not None
    [entry] = [e for e in found[1] if e.change == "similar_tickets"]
    assert entry.reason == "; ".join(opened.similar)
    message = render_assignment(opened, "http://x")
    assert "Similar resolved tickets:\n  t3 (Order paid but shows unpaid)" in message.text
    plain = opened.model_copy(update={"similar": []})
    assert b"similar" not in plain.__pydantic_serializer__.to_json(plain), "written only when there are some"
    without = Config(config.routing, config.projects, config.teams, [], None, None)
    _, _, [alone] = ticket_step(None, None, "tl-new", item, NOW, without)
    assert alone.similar == []


def test_a_new_customer_report_names_only_its_own_customers_resolved_tickets_from_the_read_model(
    tmp_path: Path,
) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'rm.db'}")
    db.init_db(engine)
    resolved = [("a1", "acme", NOW - 2 * DAY), ("g1", "globex", NOW - DAY), ("n1", None, NOW - DAY)]
    db.project(
        engine,
        [
            TicketEvent(
                change_id=f"{tid}:2",
                change=Change.resolved,
                actor="olga",
                reason="callback was late",
                at=at,
                ticket=ticket(
                    ticket_id=tid,
                    summary="Order paid but shows unpaid",
                    state=TicketState.resolved,
                    resolved_at=at,
                    customer=customer,
                    version=2,
                ),
                trace_id="t",
            )
            for tid, customer, at in resolved
        ],
    )
    rows = db.resolved_tickets(engine)
    assert {r[0]: r[4] for r in rows} == {"a1": "acme", "g1": "globex", "n1": None}
    config = Config(
        RoutingConfig.model_validate({"route": {"team": "ops"}}),
        PROJECTS,
        TeamsConfig(),
        [],
        None,
        past_tickets(rows, LEXICAL),
    )

    def similar_for(labels: dict[str, str]) -> list[str]:
        report = event(
            event_id="r", kind=EventKind.feedback, dedup_key="p/r", summary="order paid but unpaid", labels=labels
        )
        _, _, [opened] = ticket_step(
            None, None, "tl-r", TicketInput(event=report, group_key="p/r", decision=None), NOW, config
        )
        return [line.split(" ")[0] for line in opened.similar]

    assert similar_for({"customer": "acme"}) == ["a1"], "acme's project: never globex's ticket"
    assert similar_for({}) == ["n1"], "no customer: only tickets of no customer"


def test_a_new_report_is_tokenised_and_embedded_once_for_the_known_issues_and_the_past_tickets() -> None:
    embedded: list[str] = []

    def counting(texts: Sequence[str]) -> Any:
        embedded.extend(texts)
        return concept_embed(texts)

    models = TextModels(char_segment, counting, "counting")
    known = build_known_issue_index(PROJECTS, models)
    rows = [(f"t{i}", f"old ticket {i} about login", NOW - DAY, "by olga: restarted", "acme") for i in range(50)]
    past = past_tickets(rows, models)
    embedded.clear()
    config = Config(RoutingConfig.model_validate({"route": {"team": "ops"}}), PROJECTS, TeamsConfig(), [], known, past)
    report = event(
        event_id="n1", kind=EventKind.feedback, dedup_key="p/n1", summary="cannot log in", labels={"customer": "acme"}
    )
    ticket_step(None, None, "tl-new", TicketInput(event=report, group_key="p/n1", decision=None), NOW, config)
    assert embedded == ["cannot log in"], "one embedding for both comparisons"
    alert = event(event_id="a1", dedup_key="am/a1", summary="disk full on db-1")
    embedded.clear()
    ticket_step(None, None, "tl-alert", TicketInput(event=alert, group_key="am/a1", decision=None), NOW, config)
    assert embedded == [], "a new alert is compared with nothing (a storm must not pay for it per ticket)"


@pytest.mark.parametrize(
    ("timeline", "mail"),
    [
        (
            'known issue WEB-12 (Checkout on Safari), from handover package webshop v1, matched keyword "checkout". '
            "Workaround: Use the app.",
            "Checkout on Safari\nWorkaround: Use the app.",
        ),
        (
            "known issue K (Login (SSO), mobile), suggested by similarity 0.41, mostly semantic (lexical 0.29, "
            "semantic 0.69; no keyword matched). Workaround: x",
            "Login (SSO), mobile\nWorkaround: x",
        ),
        ("known issue K (Plain title). Workaround: y", "Plain title\nWorkaround: y"),
        ("something else", "something else"),
    ],
)
def test_the_reporter_reads_the_title_and_the_workaround_not_how_it_matched(timeline: str, mail: str) -> None:
    assert for_reporter(timeline) == mail
