from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.notifier.config import NotifyConfig
from services.notifier.pipeline import notices_for_ticket_event, plan_notice
from services.router.knowledge import known_issue_for
from services.router.lifecycle import TicketRecord, with_known_issue
from services.router.projects import KnownIssue, ProjectsConfig
from shared.events import Change, EventKind, TicketEvent
from tests.unit.factories import event, ticket

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
PROJECTS = ProjectsConfig.model_validate(
    {
        "projects": [
            {
                "name": "webshop",
                "customer": "acme",
                "matchers": ['customer="acme"'],
                "go_live": "2026-11-01T00:00:00Z",
                "implementation": {"team": "impl"},
                "operations": {"team": "ops"},
                "known_issues": [
                    {
                        "id": "KI-1",
                        "title": "PDF invoices empty in Safari",
                        "keywords": ["invoice", "pdf"],
                        "matchers": ['browser=~"(?i)safari"'],
                        "workaround": "Use Chrome or download the PDF.",
                        "reply_to_reporter": True,
                    },
                    {"id": "KI-2", "title": "Slow search", "keywords": ["search"], "workaround": "Filter by category."},
                ],
            }
        ]
    }
)


def feedback(summary: str, **labels: str) -> object:
    return event(kind=EventKind.feedback, summary=summary, labels={"customer": "acme", **labels})


def test_feedback_matching_keywords_and_labels_finds_the_known_issue() -> None:
    found = known_issue_for(feedback("The INVOICE is blank", browser="Safari"), PROJECTS)  # type: ignore[arg-type]
    assert found is not None and found.issue.id == "KI-1" and found.project.name == "webshop"
    assert (found.suggestion.how, found.suggestion.keyword) == ("keyword", "invoice")
    found = known_issue_for(feedback("search takes forever"), PROJECTS)  # type: ignore[arg-type]
    assert found is not None and found.issue.id == "KI-2"


@pytest.mark.parametrize(
    "ev",
    [
        feedback("The invoice is blank", browser="Firefox"),  # labels do not match
        feedback("Checkout is broken", browser="Safari"),  # no keyword
        event(kind=EventKind.feedback, summary="invoice blank", labels={"customer": "other", "browser": "Safari"}),
        event(kind=EventKind.alert, summary="invoice pdf", labels={"customer": "acme", "browser": "Safari"}),
    ],
)
def test_no_match_outside_the_issue_its_project_or_for_alerts(ev: object) -> None:
    assert known_issue_for(ev, PROJECTS) is None  # type: ignore[arg-type]


def test_a_known_issue_must_say_what_it_matches() -> None:
    with pytest.raises(ValueError, match="matchers or keywords"):
        KnownIssue(id="x", title="t", workaround="w")


def opened_report() -> tuple[TicketRecord, TicketEvent]:
    t = ticket(kind=EventKind.feedback, labels={"reporter": "ann@acme.example"})
    return TicketRecord(ticket=t), TicketEvent(
        change_id="tl-1:1", change=Change.opened, actor="portal", at=NOW, ticket=t, trace_id="t"
    )


def test_the_workaround_rides_on_the_opened_event() -> None:
    rec, opened = opened_report()
    new, out = with_known_issue(
        rec, opened, "KI-1", "PDF invoices empty", "Use Chrome.", reply_to_reporter=True, how='matched keyword "pdf"'
    )
    assert out.change is Change.opened and out.ticket.version == 1, "one input event, one ticket event"
    assert out.workaround == 'known issue KI-1 (PDF invoices empty), matched keyword "pdf". Workaround: Use Chrome.'
    assert out.notify_reporter and new.ticket.known_issue == "KI-1" == out.ticket.known_issue


def test_the_reporter_gets_the_workaround_by_email_when_configured() -> None:
    rec, opened = opened_report()
    _, out = with_known_issue(rec, opened, "KI-1", "PDF", "Use Chrome.", reply_to_reporter=True)
    notices = notices_for_ticket_event(out, "http://tl")
    assert [n.message.kind for n in notices] == ["assignment", "workaround"]
    [dispatch] = plan_notice(notices[1], NotifyConfig(teams={}))
    assert (dispatch.channel, dispatch.target) == ("email", "ann@acme.example")
    assert dispatch.message.subject == "Re: disk full [tl-1]"
    assert "Workaround: Use Chrome." in dispatch.message.text
    quiet = out.model_copy(update={"notify_reporter": False})
    assert [n.message.kind for n in notices_for_ticket_event(quiet, "http://tl")] == ["assignment"]
    no_address = out.model_copy(update={"ticket": out.ticket.model_copy(update={"labels": {"reporter": "ann"}})})
    assert [n.message.kind for n in notices_for_ticket_event(no_address, "http://tl")] == ["assignment"]
