"""The sla service as a process on the real broker: pre-breach warnings, then the escalation, in order."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from deploy.local.kafka_local import free_port
from deploy.local.stack import Stack
from shared.codec import encode
from shared.events import Change, TicketEvent
from shared.topics import Topics, ensure_topics
from tests.support.configs import write_config
from tests.support.kafka_io import produce, read_all
from tests.unit.factories import ticket

pytestmark = pytest.mark.integration

SLA = """
policies:
  default:
    acknowledge: {P1: 6s}
    warnings: [0.5]
    escalation:
      - {after: 0s, team: owner}
"""


def test_a_warning_before_the_deadline_then_the_escalation(kafka_bootstrap: str, tmp_path: Path) -> None:
    topics = Topics(f"it-sla-{time.time_ns()}.", 4)
    asyncio.run(ensure_topics(kafka_bootstrap, topics.all()))
    stack = Stack(
        kafka_bootstrap,
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        write_config(tmp_path, sla=SLA),
        tmp_path / "logs",
        free_port(),
        9,
        extra_env={"TICKETLOOP_TOPIC_PREFIX": topics.prefix},
    )
    try:
        stack.start("sla")
        opened_at = datetime.now(UTC)
        t = ticket(opened_at=opened_at, first_seen=opened_at, last_seen=opened_at)
        opened = TicketEvent(change_id="tl-1:1", change=Change.opened, actor="am", at=opened_at, ticket=t, trace_id="t")
        asyncio.run(produce(kafka_bootstrap, topics.tickets.name, [("tl-1", encode(opened))]))
        records = asyncio.run(read_all(kafka_bootstrap, topics.escalations.name, expect=2, within_s=60))
        stack.check_alive()
    finally:
        stack.stop_all()
    fired = [orjson.loads(r.value) for r in records]
    assert [(f["kind"], f["level"]) for f in fired] == [("warning", 1), ("escalation", 1)]
    warned_at = datetime.fromisoformat(fired[0]["fired_at"])
    assert warned_at - opened_at >= (datetime.fromisoformat(fired[0]["deadline"]) - opened_at) / 2
    assert datetime.fromisoformat(fired[1]["fired_at"]) >= datetime.fromisoformat(fired[1]["deadline"])
    assert "50% of the acknowledge target used" in fired[0]["reason"]
