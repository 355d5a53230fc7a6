"""Debian's prometheus-alertmanager as a real peer on 127.0.0.1, with one webhook receiver.

Used by the end-to-end test that points it at intake (``alertmanager()``) and by ``bench.loop_storm``, which
runs it beside ticketloop with its own route timing (``Alertmanager`` with ``config(...)``).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from deploy.local.kafka_local import free_port

BINARY_NAMES = ("prometheus-alertmanager", "alertmanager")


def binary() -> str | None:
    return next((p for p in map(shutil.which, BINARY_NAMES) if p), None)


def config(
    webhook_url: str,
    token: str | None = None,
    *,
    group_by: Sequence[str] = ("alertname", "instance"),
    group_wait: str = "1s",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
) -> str:
    """alertmanager.yml: one route to one webhook receiver (with a bearer token when given)."""
    lines = [
        "route:",
        "  receiver: ticketloop",
        f"  group_by: [{', '.join(group_by)}]",
        f"  group_wait: {group_wait}",
        f"  group_interval: {group_interval}",
        f"  repeat_interval: {repeat_interval}",
        "receivers:",
        "  - name: ticketloop",
        "    webhook_configs:",
        f'      - url: "{webhook_url}"',
        "        send_resolved: true",
    ]
    if token:
        lines += ["        http_config:", "          authorization:", f'            credentials: "{token}"']
    return "\n".join(lines) + "\n"


class Alertmanager:
    """The process: ``start()`` waits (bounded) for ``/-/ready``; ``stop()`` ends it. Logs in the workdir."""

    def __init__(self, workdir: Path, config_text: str) -> None:
        self.workdir, self.config_text = workdir, config_text
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "alertmanager.log"

    def start(self, timeout: float = 30.0) -> Alertmanager:
        exe = binary()
        if exe is None:
            raise RuntimeError(
                "Alertmanager is not installed: apt-get install prometheus-alertmanager (make test does)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "alertmanager.yml"
        cfg.write_text(self.config_text)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(  # noqa: S603
                [
                    exe,
                    f"--config.file={cfg}",
                    f"--storage.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp,  # noqa: S310
            ):
                if resp.status == 200:
                    return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"alertmanager did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> Alertmanager:
        return self.start()

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


@contextlib.contextmanager
def alertmanager(workdir: Path, webhook_url: str, token: str) -> Iterator[str]:
    """Alertmanager posting to ``webhook_url`` with ``token``, grouped by alertname and instance; yields its URL."""
    with Alertmanager(workdir, config(webhook_url, token)) as am:
        yield am.url
