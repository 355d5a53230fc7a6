"""The whole loop through what production does to it: two chats down while every worker is SIGKILLed and
restarted as tickets open, then the broker restarted. Counted at the sinks, as the people in the chat would count:
every ticket reaches every channel, a message held for a chat that was down arrives exactly once, and what
repeats elsewhere is bounded by what was in flight when a worker died. And a stack left running
(``make demo``) starts again by itself the broker and the services that were killed (``revive_all``)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from deploy.local.demo import revive_all
from deploy.local.kafka_local import LocalKafka
from tests.e2e.test_chat_outage import (
    FAST_RECOVERY,
    OPS_CHAT,
    has_all,
    in_flight,
    named,
    repeated_messages,
    ticket_ids,
)
from tests.support.chatlab import ChatLab, am_alert, am_payload, chat_lab
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def post_until_accepted(lab: ChatLab, first: int, count: int, within_s: float = 180.0) -> None:
    """Post as Alertmanager does: again until intake accepts (it answers 503 while the broker is away)."""
    alerts = [am_alert(f"host-{i}", "db") for i in range(first, first + count)]
    deadline = time.monotonic() + within_s
    while True:
        try:
            resp = lab.alertmanager().post("/api/v1/integrations/am", json=am_payload(alerts))
            if resp.status_code == 202:
                return
            assert resp.status_code == 503, resp.text
        except OSError:
            pass
        assert time.monotonic() < deadline, "intake never accepted the alerts again"
        time.sleep(0.5)


def every_ticket_at_every_chat(lab: ChatLab, tickets: int) -> dict[str, int]:
    """Once ``tickets`` tickets are in the API: each of them reaches each of operations' chats, nothing else does,
    no message was refused and every service is up. Per chat, how many messages named a ticket again."""
    ids = ticket_ids(lab, tickets)
    for vendor in OPS_CHAT:
        wait_for(f"every ticket at {vendor}", has_all(lab, vendor, ids), stack=lab.stack, timeout=300)
    lab.stack.check_alive()
    for vendor in OPS_CHAT:
        assert set(named(lab.chat.received(vendor))) == set(ids), f"{vendor}: every ticket, nothing else"
    assert lab.chat.rejections == []
    return {vendor: repeated_messages(lab.chat.received(vendor)) for vendor in OPS_CHAT}


def test_a_stack_left_running_starts_again_the_broker_and_the_services_that_were_killed(tmp_path: Path) -> None:
    with LocalKafka() as broker, chat_lab(broker.bootstrap, tmp_path, **FAST_RECOVERY) as lab:
        post_until_accepted(lab, 0, 5)
        wait_for("the first notifications", lambda: len(lab.chat.received("webhook")) >= 1, stack=lab.stack)
        killed = {"intake", "router", "notifier"}
        # from outside, as a chaos run or the OOM killer would: neither the stack nor the broker's owner is told
        assert broker.proc is not None
        os.killpg(broker.proc.pid, signal.SIGKILL)
        broker.proc.wait()
        for name in killed:
            os.killpg(lab.stack.procs[name].pid, signal.SIGKILL)
            lab.stack.procs[name].wait()
        told: list[str] = []

        def all_back() -> bool:
            told.extend(revive_all(lab.stack, broker))
            back = {line.split(" ")[0] for line in told}
            return "the" in back and killed <= back

        wait_for("the broker and the killed services started again", all_back, timeout=120)
        assert told[0].startswith("the broker exited (killed by SIGKILL): started again on its data"), told
        assert killed <= {line.split(" ")[0] for line in told[1:]}, told  # (another that died meanwhile, too)
        assert all("exited (killed by SIGKILL): started again" in line for line in told[1:]), told
        lab.stack.wait_ready()
        post_until_accepted(lab, 5, 5)
        ids = ticket_ids(lab, 10)
        for vendor in OPS_CHAT:
            wait_for(f"every ticket at {vendor}", has_all(lab, vendor, ids), stack=lab.stack, timeout=300)
        assert revive_all(lab.stack, broker) == [] and lab.chat.rejections == []


def test_every_worker_killed_and_the_broker_restarted_with_two_chats_down_lose_nothing_and_repeat_no_held_message(
    tmp_path: Path,
) -> None:
    """The faults together, as a bad night has them: DingTalk unreachable and Slack answering 503 from the first
    ticket; meanwhile every worker SIGKILLed, the broker restarted, and the notifier killed again while it holds
    their messages. Nothing reached the two while they were down, so each held message arrives there exactly once
    when they return; the chats that stayed up repeat at most what was in flight when the notifier died."""
    down = {"dingtalk": "drop", "slack": "503"}
    with LocalKafka() as broker, chat_lab(broker.bootstrap, tmp_path, **FAST_RECOVERY) as lab:
        for vendor, mode in down.items():
            lab.chat.down(f"/{vendor}", 3600, mode=mode)
        post_until_accepted(lab, 0, 10)
        wait_for("the first notifications", lambda: len(lab.chat.received("webhook")) >= 3, stack=lab.stack)
        for service in ("router", "sla", "notifier"):
            lab.stack.kill(service)
            lab.stack.start(service)
        post_until_accepted(lab, 10, 10)
        broker.halt()  # at once: the second wave is still on its way through the loop
        broker.resume()
        post_until_accepted(lab, 20, 10)
        ids = ticket_ids(lab, 30)
        for vendor in set(OPS_CHAT) - set(down):
            wait_for(f"every ticket at {vendor}", has_all(lab, vendor, ids), stack=lab.stack, timeout=300)
        lab.stack.kill("notifier")  # again, with the two chats' messages held
        lab.stack.start("notifier")
        assert all(lab.chat.received(vendor) == [] for vendor in down), "nothing reached a chat while it was down"
        for vendor in down:
            lab.chat.up(f"/{vendor}")
        for vendor, again in every_ticket_at_every_chat(lab, 30).items():
            most = 0 if vendor in down else 2 * in_flight(vendor)
            assert again <= most, f"{vendor}: {again} messages repeated (at most {most})"
