"""The quarterly review of a scripted quarter, read from SQLite and from PostgreSQL (Debian's package), written by
``ticketloop review`` with a proposed sla.yaml replayed, and opened in headless Chromium: a screenshot is taken,
the page logs nothing to its console, and every section shows the expected numbers."""

from __future__ import annotations

import io
import re
from html import unescape
from pathlib import Path

import pytest
from sqlalchemy import Engine

from services.cli import main
from tests.support.chromium import DESKTOP, console_problems, find_browser
from tests.support.quarter import EXPECTED_TEXT, QUARTER, SLA_YAML, write_quarter

pytestmark = pytest.mark.integration

PROPOSED = SLA_YAML.replace("P1: 15m", "P1: 45m")
"""A slower P1 acknowledge target: ticket B (acknowledged after 30 minutes) would not have breached."""


def test_the_review_opens_in_a_browser_with_every_section(engine: Engine, tmp_path: Path) -> None:
    events = write_quarter(engine)
    config = tmp_path / "config"
    config.mkdir()
    (config / "sla.yaml").write_text(SLA_YAML)
    (tmp_path / "proposed.yaml").write_text(PROPOSED)
    recorded = tmp_path / "tickets.jsonl"
    recorded.write_text("".join(ev.model_dump_json() + "\n" for ev in events))
    path, out = tmp_path / "review.html", io.StringIO()
    code = main(
        [
            "review",
            "--quarter",
            QUARTER,
            "--customer",
            "acme",
            "--database-url",
            engine.url.render_as_string(hide_password=False),
            "--config-dir",
            str(config),
            "--out",
            str(path),
            "--proposed",
            str(tmp_path / "proposed.yaml"),
            "--events",
            str(recorded),
            "--no-progress",
        ],
        out,
    )
    assert code == 0, out.getvalue()
    browser = find_browser(tmp_path / "chromium-profile", DESKTOP)
    png = tmp_path / "review.png"
    problems = console_problems(browser.screenshot(path.as_uri(), png))
    dom, err = browser.dom(path.as_uri())
    assert not problems + console_problems(err), problems
    for sid, texts in {**EXPECTED_TEXT, "replay": ["of 5 tickets", "tl-b: breached", "-> met"]}.items():
        found = re.search(rf'<section id="{sid}">(.*?)</section>', dom, re.S)
        assert found is not None, f"the browser shows no section {sid}"
        shown = " ".join(unescape(re.sub(r"<[^>]+>", " ", found.group(1))).split())
        for want in texts:
            assert want in shown, f"section {sid} lacks {want!r}: {shown[:400]}"
    assert dom.count("<svg") == 3
