"""The broker away for over a minute while tickets are on their way through the loop: every worker stays up and
every ticket reaches every chat once. Before, router and sla exited (status 1) soon after the broker came back:
the group's rejoin loaded a task's tables, the changelog reader's stop raised aiokafka's own CancelledError
(shared/streaming/stopping.py), and that ended the group's coordination task. The outage outlasts aiokafka's
request timeout (40 s) and the session timeout, so the rejoin and the failed loads happen while it lasts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from deploy.local.kafka_local import LocalKafka
from tests.e2e.test_chaos import every_ticket_at_every_chat, post_until_accepted
from tests.e2e.test_chat_outage import FAST_RECOVERY, OPS_CHAT
from tests.support.chatlab import chat_lab
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

AWAY_S = 75.0
"""Past the 40 s a task's table load waits for the broker, with a rejoin after the session timeout before it."""


def test_the_broker_away_over_a_minute_mid_flow_stops_no_worker_and_loses_or_repeats_nothing(tmp_path: Path) -> None:
    with LocalKafka() as broker, chat_lab(broker.bootstrap, tmp_path, **FAST_RECOVERY) as lab:
        post_until_accepted(lab, 0, 30)
        broker.halt()  # at once: the alerts are still on their way through the loop
        away_until = time.monotonic() + AWAY_S
        # the workers run on without the broker meanwhile; the wait ends at the outage's end or at a worker's exit
        wait_for("the outage's end", lambda: time.monotonic() >= away_until, stack=lab.stack, timeout=AWAY_S + 30)
        broker.resume()
        post_until_accepted(lab, 30, 30)
        repeated = every_ticket_at_every_chat(lab, 60)
        assert repeated == dict.fromkeys(OPS_CHAT, 0), "no ticket named twice: no worker was killed"
