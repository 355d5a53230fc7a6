"""The quarterly review: its figures from a scripted quarter in the read model (SQLite), the HTML's sections, and
the command (the same on PostgreSQL, in Chromium: tests/integration/test_review_browser.py)."""

from __future__ import annotations

import io
import re
from html import unescape
from pathlib import Path

import pytest
from sqlalchemy import Engine

from services.cli import main
from services.review.command import default_out
from services.review.figures import (
    Held,
    QuarterError,
    breach_clock,
    problem_key,
    quarter_bounds,
    quarter_name,
    review,
)
from services.review.load import Scope, load_quarter
from services.review.report import render
from services.sla.policy import SlaConfig
from tests.support.quarter import EXPECTED_TEXT, QUARTER, SLA_YAML, write_quarter

SLA = SlaConfig.model_validate(__import__("yaml").safe_load(SLA_YAML))


def test_quarters_are_read_as_utc_ranges_and_a_bad_one_is_named() -> None:
    start, end = quarter_bounds("2026q4")
    assert (start.isoformat(), end.isoformat()) == ("2026-10-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00")
    assert quarter_bounds("2026Q1")[1].isoformat() == "2026-04-01T00:00:00+00:00"
    with pytest.raises(QuarterError, match="like 2026Q4"):
        quarter_bounds("2026Q5")
    for text in ("9999Q4", "0000Q1"):
        with pytest.raises(QuarterError, match="between 1970 and 9000"):
            quarter_bounds(text)
    # as typed on a Chinese keyboard: one quarter, one name for the report and its file
    assert [quarter_name(t) for t in ("\uff12\uff10\uff12\uff16\uff31\uff14", " 2026q4 ", "2026Q4")] == ["2026Q4"] * 3
    for text in ("2026Q\u0664", "\u0662\u0660\u0662\u0666Q4", "2026-Q4"):  # other scripts' digits are no year
        with pytest.raises(QuarterError, match="like 2026Q4"):
            quarter_name(text)
    assert breach_clock("tl-1:first_response:3:breach") == "first_response"
    assert problem_key("Disk 91%  full on DB-1") == problem_key("disk 95% full on db-2")


def test_the_figures_of_a_scripted_quarter(engine: Engine) -> None:
    write_quarter(engine)
    start, end = quarter_bounds(QUARTER)
    tickets, entries, answers = load_quarter(engine, start, end, Scope(customer="acme"))
    r = review(QUARTER, "customer acme", tickets, entries, answers, SLA)
    assert r.tickets == 5 and sorted(t.ticket_id for t in tickets) == ["tl-a", "tl-b", "tl-c", "tl-d", "tl-e"]
    assert r.compliance == {
        "acknowledge": {"P1": Held(2, 1), "P3": Held(3, 3)},
        "resolve": {"P1": Held(2, 2)},
        "first_response": {"P3": Held(3, 2)},
    }
    assert [(b.ticket_id, b.clock) for b in r.breaches] == [("tl-b", "acknowledge"), ("tl-d", "first_response")]
    assert r.by_category == {"alert": 2, "bug": 2, "question": 1}
    assert r.by_phase == {"operations": 3, "hypercare": 2}
    assert [(p.summary, p.tickets, p.occurrences) for p in r.recurring] == [
        ("Disk 91% full on db-1", 2, 6),
        ("Invoice PDF empty", 2, 2),
    ]
    assert [p.summary for p in r.sop_candidates] == ["Invoice PDF empty"], "the disk alerts are no customer report"
    assert [(m.ticket_id, m.handover) for m in r.moves] == [("tl-e", True)]
    assert (r.known_issue_hits, r.reports, r.reports_answered) == ({"WEB-12": 1}, 3, 1)
    assert r.known_issue_said == {"WEB-12": (1, 0)}
    assert (r.satisfaction.answers, r.satisfaction.satisfied) == (2, 1)
    assert [(a.score, a.comment) for a in r.comments] == [(5, "fast"), (2, "slow")]
    first = r.weeks[0]
    assert (first.opened, first.mtta_min, first.mttr_min) == (1, 10.0, 60.0)
    assert len(r.weeks) == 14 and sum(w.opened for w in r.weeks) == 5
    assert r.notes == ["1 ticket(s) still open: each counts as within its targets until it breaches"]
    everyone = load_quarter(engine, start, end, Scope())[0]
    assert sorted(t.ticket_id for t in everyone) == ["tl-a", "tl-b", "tl-c", "tl-d", "tl-e", "tl-g"]


def section_text(html: str, sid: str) -> str:
    found = re.search(rf'<section id="{sid}">(.*?)</section>', html, re.S)
    assert found is not None, f"no section {sid}"
    return unescape(re.sub(r"<[^>]+>", " ", found.group(1)))


def test_the_command_writes_one_self_contained_html_file_with_every_section(engine: Engine, tmp_path: Path) -> None:
    write_quarter(engine)
    config = tmp_path / "config"
    config.mkdir()
    (config / "sla.yaml").write_text(SLA_YAML)
    out, path = io.StringIO(), tmp_path / "review.html"
    argv = ["review", "--quarter", QUARTER, "--customer", "acme", "--config-dir", str(config), "--out", str(path)]
    code = main([*argv, "--database-url", str(engine.url), "--no-progress"], out)
    assert code == 0, out.getvalue()
    assert f"written to {path}" in out.getvalue() and "5 tickets" in out.getvalue()
    html = path.read_text()
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    for sid, texts in EXPECTED_TEXT.items():
        text = " ".join(section_text(html, sid).split())
        for want in texts:
            assert want in text, f"section {sid} lacks {want!r}: {text[:400]}"
    assert html.count("<svg") == 3


def test_the_command_names_what_is_wrong(tmp_path: Path) -> None:
    out = io.StringIO()
    assert main(["review", "--quarter", "2026Q9", "--no-progress"], out) == 1
    assert "like 2026Q4" in out.getvalue()
    out = io.StringIO()
    code = main(["review", "--quarter", QUARTER, "--proposed", str(tmp_path / "none.yaml"), "--no-progress"], out)
    assert code == 1 and "none.yaml" in out.getvalue()
    out = io.StringIO()  # recorded events with nothing to replay on them: not silently passed over
    assert main(["review", "--quarter", QUARTER, "--events", str(tmp_path / "e.jsonl"), "--no-progress"], out) == 1
    assert out.getvalue() == "error: --events and --kafka are what --proposed replays: give the changed sla.yaml too\n"


def test_render_escapes_what_people_wrote() -> None:
    r = review(QUARTER, "<b>scope</b>", [], [], [], SLA)
    html = render(r, replay="<i>replayed</i>")
    assert "&lt;b&gt;scope&lt;/b&gt;" in html and "&lt;i&gt;replayed&lt;/i&gt;" in html and "<b>scope" not in html


def test_the_command_says_what_it_cannot_write_or_open(engine: Engine, tmp_path: Path) -> None:
    write_quarter(engine)
    config = tmp_path / "config"
    config.mkdir()
    (config / "sla.yaml").write_text(SLA_YAML)
    base = ["review", "--quarter", QUARTER, "--config-dir", str(config), "--no-progress"]
    out = io.StringIO()
    assert main([*base, "--out", str(tmp_path), "--database-url", str(engine.url)], out) == 1
    assert out.getvalue() == f"error: cannot write {tmp_path}: Is a directory\n"
    out = io.StringIO()
    assert main([*base, "--database-url", "postgresql://u:rv-s3cret@h:notaport/x"], out) == 1
    assert out.getvalue() == "error: not a database URL, or no driver for it here (ValueError)\n"
    out = io.StringIO()  # a mistyped path: said, and no empty database made there
    missing = tmp_path / "typo.db"
    assert main([*base, "--database-url", f"sqlite:///{missing}"], out) == 1
    assert out.getvalue() == (
        f"error: no database at {missing}: the services make it when they first start; give their --database-url\n"
    )
    assert not missing.exists()
    out = io.StringIO()  # a database without the read model: the driver's own words
    (tmp_path / "empty.db").touch()
    assert main([*base, "--database-url", f"sqlite:///{tmp_path / 'empty.db'}"], out) == 1
    assert out.getvalue() == "error: the read model could not be read: OperationalError: no such table: tickets\n"


def test_the_default_file_name_holds_no_path_and_no_control_character() -> None:
    assert default_out("2026q4 ", Scope("a/b", "x" * 300)) == Path(f"review-2026Q4-a_b-{'x' * 60}.html")
    assert default_out("2026Q4", Scope(None, None)) == Path("review-2026Q4.html")
