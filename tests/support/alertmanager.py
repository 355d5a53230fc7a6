"""Debian's prometheus-alertmanager as a real peer: configured with a webhook receiver pointing at intake."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from deploy.local.kafka_local import free_port

BINARY_NAMES = ("prometheus-alertmanager", "alertmanager")


def binary() -> str | None:
    return next((p for p in map(shutil.which, BINARY_NAMES) if p), None)


def config(webhook_url: str, token: str) -> str:
    return f"""
route:
  receiver: ticketloop
  group_by: [alertname, instance]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: ticketloop
    webhook_configs:
      - url: "{webhook_url}"
        send_resolved: true
        http_config:
          authorization:
            credentials: "{token}"
"""


@contextlib.contextmanager
def alertmanager(workdir: Path, webhook_url: str, token: str) -> Iterator[str]:
    exe = binary()
    if exe is None:
        raise RuntimeError("Alertmanager is not installed: apt-get install prometheus-alertmanager (make test does)")
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "alertmanager.yml"
    cfg.write_text(config(webhook_url, token))
    port = free_port()
    with (workdir / "alertmanager.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                exe,
                f"--config.file={cfg}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:  # noqa: S310
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"alertmanager did not start: {(workdir / 'alertmanager.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
