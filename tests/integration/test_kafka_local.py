"""deploy/local/kafka_local.py run: a SIGTERM stops its broker too (it runs in a session of its own, so nothing
else would: it used to be left running, holding its port)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(180)


def test_a_sigterm_stops_the_broker_it_started() -> None:
    runner = subprocess.Popen(
        [sys.executable, "deploy/local/kafka_local.py", "run"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert runner.stdout is not None
        line = runner.stdout.readline()
        found = re.search(r"kafka ready at ([\d.]+):(\d+)", line)
        assert found, f"no ready line: {line!r}"
        host, port = found.group(1), int(found.group(2))
        with socket.create_connection((host, port), timeout=5):
            pass  # the broker listens
        os.kill(runner.pid, signal.SIGTERM)
        assert runner.wait(60) == 0
        with pytest.raises(ConnectionRefusedError), socket.create_connection((host, port), timeout=5):
            pass  # and is gone with the runner
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
