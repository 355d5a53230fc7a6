"""Start ticketloop's four services as separate processes against a given broker and database.

Used by the local demo (``make demo``) and the end-to-end tests, so both run the stack the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from shared.infra.restarts import deaths_in_a_row, restart_due

SERVICES = ("intake", "router", "sla", "notifier")
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    bootstrap: str
    database_url: str
    config_dir: Path
    workdir: Path
    intake_port: int
    smtp_port: int
    extra_env: dict[str, str] = field(default_factory=dict)
    metrics_ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    services: dict[str, str] = field(default_factory=dict)
    """Per process name: the service it runs."""
    started_at: dict[str, float] = field(default_factory=dict)
    """Per process name: when it was last started (monotonic)."""
    in_a_row: dict[str, int] = field(default_factory=dict)
    """Per process name: its deaths in a row (``revive``)."""
    dead_since: dict[str, float] = field(default_factory=dict)
    """Per process name found dead and not started again yet: when ``revive`` found it."""

    @property
    def intake_url(self) -> str:
        return f"http://127.0.0.1:{self.intake_port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "DATABASE_URL": self.database_url,
                "TICKETLOOP_CONFIG_DIR": str(self.config_dir),
                "TICKETLOOP_INTAKE_PORT": str(self.intake_port),
                "TICKETLOOP_INTAKE_PUBLIC_URL": self.intake_url,
                "TICKETLOOP_NOTIFIER_PUBLIC_URL": self.intake_url,
                "TICKETLOOP_NOTIFIER_SMTP_PORT": str(self.smtp_port),
                "TICKETLOOP_SESSION_TIMEOUT_S": "6",
                # one-click links in messages (shared/infra/actionlinks.py); a production deployment sets its own key
                "TICKETLOOP_ACTION_LINK_KEYS": "local-stack-action-link-key-0001",
                "PYTHONUNBUFFERED": "1",
            }
        )
        for service, port in self.metrics_ports.items():
            env[f"TICKETLOOP_{service.upper()}_METRICS_PORT"] = str(port)
        env.update(self.extra_env)
        return env

    def log_path(self, service: str) -> Path:
        return self.workdir / f"{service}.log"

    def start(self, service: str, name: str | None = None) -> subprocess.Popen[bytes]:
        """Start ``service``; ``name`` (default: the service) names the process for kill and its log, so a second
        worker of one service can run beside the first."""
        name = name or service
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path(name).open("ab") as log:
            proc = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", f"services.{service}.main"],
                cwd=REPO,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = proc
        self.services[name] = service
        self.started_at[name] = time.monotonic()
        return proc

    def start_all(self) -> None:
        for service in SERVICES:
            self.start(service)

    def kill(self, service: str, sig: signal.Signals = signal.SIGKILL) -> None:
        proc = self.procs.pop(service, None)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop_all(self) -> None:
        for service in list(self.procs):
            self.kill(service, signal.SIGTERM)

    def revive(self) -> list[tuple[str, int]]:
        """Start again every process that exited (as compose's ``restart: unless-stopped`` does): at once the first
        time, after a pause that grows while it keeps dying (shared/infra/restarts.py). Returns those started
        again, each with its exit code. For a stack left running (``make demo``); ``check_alive`` is for a run
        that must stop when a service dies."""
        now = time.monotonic()
        started = []
        for name, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None:
                continue
            if name not in self.dead_since:
                self.dead_since[name] = now
                stayed = now - self.started_at.get(name, now)
                self.in_a_row[name] = deaths_in_a_row(self.in_a_row.get(name, 0), stayed)
            if restart_due(self.dead_since[name], self.in_a_row[name], now):
                del self.dead_since[name]
                self.start(self.services.get(name, name), name)
                started.append((name, code))
        return started

    def check_alive(self) -> None:
        for service, proc in self.procs.items():
            if proc.poll() is not None:
                tail = self.log_path(service).read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{service} exited with {proc.returncode}:\n{tail}")

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.intake_url}/readyz", timeout=2) as resp,  # noqa: S310
            ):
                if resp.status == 200:
                    return
            time.sleep(0.3)
        raise TimeoutError(f"intake not ready after {timeout:.0f}s; see {self.workdir}")
