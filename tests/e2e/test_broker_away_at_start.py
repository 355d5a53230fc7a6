"""A worker started while its broker is away (a restart of both at once, a node that comes up first) waits for the
broker, however long, and then serves: before, router, sla and notifier gave up after 30 tries (about 30 s) and
exited, and nothing started them again."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from deploy.local.kafka_local import LocalKafka, free_port
from deploy.local.stack import Stack
from tests.support.configs import write_config
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

WORKERS = ("router", "sla", "notifier")


def waits(stack: Stack, service: str) -> int:
    """How many times ``service`` has logged that the broker did not answer."""
    return stack.log_path(service).read_text(errors="replace").count('"kafka_not_answering_waiting"')


def started(stack: Stack, service: str) -> bool:
    return '"service_started"' in stack.log_path(service).read_text(errors="replace")


def test_workers_started_while_the_broker_is_away_wait_for_it_and_then_serve(tmp_path: Path) -> None:
    with LocalKafka() as broker:
        stack = Stack(
            broker.bootstrap,
            f"sqlite:///{tmp_path / 'tl.db'}",
            write_config(tmp_path),
            tmp_path / "logs",
            free_port(),
            9,
            extra_env={"TICKETLOOP_TOPIC_PREFIX": f"away{time.time_ns()}."},
        )
        broker.halt()
        try:
            for service in WORKERS:
                stack.start(service)
            # the twelfth try comes over 30 s after the first (the waits grow by 0.5 s up to 5 s): past the old end
            wait_for(
                "each worker waited past 30 s",
                lambda: all(waits(stack, s) >= 12 for s in WORKERS),
                stack=stack,
                timeout=240,
            )
            broker.resume()
            wait_for("each worker started", lambda: all(started(stack, s) for s in WORKERS), stack=stack, timeout=240)
            stack.check_alive()
        finally:
            stack.stop_all()
