"""The handover at the end of hypercare on the real broker (the four services as processes, a real SMTP server and
a webhook receiver that checks signatures): an open ticket of the project moves from the implementation engineer to
operations once, on the router's timer, with the router killed before the boundary and started again after it;
then one digest of what moved reaches both teams, once, also after the router is started once more. A package
imported while a ticket is open is named on its timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from services.router.packages import import_package, load_projects
from tests.support.configs import API_TOKEN, GEN_TOKEN, intake_and_router
from tests.support.loop import running_loop
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
HYPERCARE_LEFT_S = 45
"""Hypercare ends this long after the test starts: time for the services to start and the ticket to open."""


def test_an_open_ticket_moves_to_operations_when_hypercare_ends_and_both_teams_get_one_digest(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    go_live = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    ends = go_live + timedelta(days=1, seconds=HYPERCARE_LEFT_S)
    projects = f"""
projects:
  - name: webshop
    customer: acme
    matchers: ['project="webshop"']
    go_live: {go_live.isoformat()}
    hypercare: {24 * 3600 + HYPERCARE_LEFT_S}s
    implementation: {{team: web-team, engineers: [ian]}}
    operations: {{team: operations}}
"""
    with running_loop(kafka_bootstrap, tmp_path, projects=projects) as (stack, smtp, hooks):
        api = httpx.Client(base_url=stack.intake_url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)

        def ticket() -> dict[str, object] | None:
            found = api.get("/api/v1/tickets").json()["tickets"]
            return found[0] if found else None

        def digests() -> tuple[list[str], list[str]]:
            """(the webhook's digest titles, the addresses mailed a digest)."""
            chats = [c.title for c in hooks.received() if c.body.get("kind") == "handover"]
            mails = [r for m in smtp.received() if m.subject.startswith("Handover:") for r in m.recipients]
            return chats, sorted(mails)

        body = {"summary": "checkout fails", "labels": {"project": "webshop"}, "dedup_key": "co-1"}
        posted = httpx.post(
            f"{stack.intake_url}/api/v1/integrations/portal",
            json=body,
            headers={"Authorization": f"Bearer {GEN_TOKEN}"},
        )
        assert posted.status_code == 202, posted.text
        opened = wait_for("the ticket, owned by the implementation engineer", ticket, stack=stack)
        assert (opened["team"], opened["person"], opened["phase"]) == ("web-team", "ian", "hypercare")
        assert datetime.now(UTC) < ends, "the ticket opened before the boundary"
        stack.kill("router")
        wait_for("hypercare to end while the router is down", lambda: datetime.now(UTC) > ends, timeout=90)
        stack.start("router")
        moved = wait_for(
            "the handover", lambda: (t := ticket()) is not None and t["team"] == "operations" and t, stack=stack
        )
        timeline = api.get(f"/api/v1/tickets/{opened['ticket_id']}").json()["timeline"]
        told = wait_for(
            "the digest at the implementation team's chat and in both teams' mail",
            lambda: (d := digests())[0] and len(d[1]) >= 2 and d,
            stack=stack,
        )
        # the router once more: its watch finds the digest delivered and sends nothing
        stack.kill("router")
        stack.start("router")
        wait_for(
            "the restarted router to find the digest delivered",
            lambda: "handover_digest_delivered_before" in stack.log_path("router").read_text(errors="replace"),
            stack=stack,
        )
        after = digests()
    assert isinstance(moved, dict) and (moved["person"], moved["phase"], moved["state"]) == (None, "operations", "open")
    handovers = [e for e in timeline if str(e["reason"]).startswith("handover: hypercare of project webshop ended")]
    assert len(handovers) == 1 and handovers[0]["change"] == "reassigned", timeline
    assert isinstance(told, tuple)
    assert told[0] == ["Handover: project webshop (acme), 1 ticket to operations"], told
    assert told[1] == ["ops@example.test", "web@example.test"], told
    assert after == told, "the digest reached each target once"
    mail = next(m for m in smtp.received() if m.subject.startswith("Handover:"))
    text = mail.message.get_body(("plain",))
    assert text is not None
    content = str(text.get_content())
    assert "[P" in content and "checkout fails (open) — from ian (web-team) to operations" in content, content


def test_importing_a_new_handover_package_names_it_on_the_open_tickets_of_the_project(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    go_live = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    projects = f"""
projects:
  - name: webshop
    customer: acme
    matchers: ['project="webshop"']
    go_live: {go_live.isoformat()}
    implementation: {{team: web-team, engineers: [ian]}}
    operations: {{team: operations}}
"""
    stack = intake_and_router(kafka_bootstrap, tmp_path, None, "e2e-pkg", projects=projects)
    api = httpx.Client(base_url=stack.intake_url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)
    package = tmp_path / "package.yaml"
    package.write_text(
        (REPO / "deploy/local/handover/webshop-package.yaml")
        .read_text(encoding="utf-8")
        .replace("version: 1", "version: 7")
    )

    def reasons(ticket_id: str) -> list[str]:
        return [str(e["reason"]) for e in api.get(f"/api/v1/tickets/{ticket_id}").json()["timeline"]]

    try:
        stack.wait_ready()
        body = {"summary": "search is slow", "labels": {"project": "webshop"}, "dedup_key": "s-1"}
        posted = httpx.post(
            f"{stack.intake_url}/api/v1/integrations/portal",
            json=body,
            headers={"Authorization": f"Bearer {GEN_TOKEN}"},
        )
        assert posted.status_code == 202, posted.text
        opened = wait_for("the ticket", lambda: api.get("/api/v1/tickets").json()["tickets"], stack=stack)[0]
        assert not any("handover package" in r for r in reasons(opened["ticket_id"])), "no package yet"
        import_package(stack.config_dir, package, load_projects(stack.config_dir))
        noted = wait_for(
            "the note naming the package",
            lambda: [r for r in reasons(opened["ticket_id"]) if "handover package v7" in r],
            stack=stack,
        )
    finally:
        stack.stop_all()
    assert noted == ["handover package v7 of project webshop is in force"], noted
