"""The handover at the end of hypercare on the real broker (intake and router as processes): an open ticket of the
project moves from the implementation engineer to operations once, on the router's timer, with the router killed
before the boundary and started again after it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.support.configs import API_TOKEN, GEN_TOKEN, intake_and_router
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e
HYPERCARE_S = 12


def test_an_open_ticket_moves_to_operations_when_hypercare_ends_across_a_router_kill(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    go_live = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    ends = go_live + timedelta(days=1, seconds=HYPERCARE_S)
    projects = f"""
projects:
  - name: webshop
    customer: acme
    matchers: ['project="webshop"']
    go_live: {go_live.isoformat()}
    hypercare: {24 * 3600 + HYPERCARE_S}s
    implementation: {{team: implementation, engineers: [ian]}}
    operations: {{team: operations}}
"""
    stack = intake_and_router(kafka_bootstrap, tmp_path, None, "e2e-hc", projects=projects)
    api = httpx.Client(base_url=stack.intake_url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)

    def ticket() -> dict[str, object] | None:
        found = api.get("/api/v1/tickets").json()["tickets"]
        return found[0] if found else None

    try:
        stack.wait_ready()
        body = {"summary": "checkout fails", "labels": {"project": "webshop"}, "dedup_key": "co-1"}
        posted = httpx.post(
            f"{stack.intake_url}/api/v1/integrations/portal",
            json=body,
            headers={"Authorization": f"Bearer {GEN_TOKEN}"},
        )
        assert posted.status_code == 202, posted.text
        opened = wait_for("the ticket, owned by the implementation engineer", ticket, stack=stack)
        assert (opened["team"], opened["person"], opened["phase"]) == ("implementation", "ian", "hypercare")
        assert datetime.now(UTC) < ends, "the ticket opened before the boundary"
        stack.kill("router")
        wait_for("hypercare to end while the router is down", lambda: datetime.now(UTC) > ends, timeout=60)
        stack.start("router")
        moved = wait_for(
            "the handover", lambda: (t := ticket()) is not None and t["team"] == "operations" and t, stack=stack
        )
        timeline = api.get(f"/api/v1/tickets/{opened['ticket_id']}").json()["timeline"]
    finally:
        stack.stop_all()
    assert isinstance(moved, dict) and (moved["person"], moved["phase"], moved["state"]) == (None, "operations", "open")
    handovers = [e for e in timeline if str(e["reason"]).startswith("handover: hypercare of project webshop ended")]
    assert len(handovers) == 1 and handovers[0]["change"] == "reassigned", timeline
