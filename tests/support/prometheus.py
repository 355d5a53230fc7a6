"""A real Prometheus (Debian's ``prometheus`` binary) for end-to-end tests: deploy/prometheus/prometheus.yml with its
targets pointed at a local stack, every second, with ticketloop's rule files; on a free 127.0.0.1 port (never 9090),
its data in a temporary directory, killed on exit."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from deploy.local.kafka_local import free_port
from deploy.local.stack import Stack

REPO = Path(__file__).resolve().parents[2]
SCRAPE_CONFIG = REPO / "deploy/prometheus/prometheus.yml"
RULE_FILES = sorted((REPO / "deploy/prometheus/rules").glob("*.yml"))


def stack_config(stack: Stack, interval: str = "1s") -> dict[str, Any]:
    """The deployment's scrape config (its job names, which the rules and dashboards use) aimed at ``stack``."""
    config: dict[str, Any] = yaml.safe_load(SCRAPE_CONFIG.read_text())
    targets = {
        "ticketloop-intake": [f"127.0.0.1:{stack.intake_port}"],
        "ticketloop-workers": [f"127.0.0.1:{stack.metrics_ports[s]}" for s in ("router", "sla", "notifier")],
    }
    jobs = config["scrape_configs"]
    assert {job["job_name"] for job in jobs} == set(targets), "the scrape config's jobs changed: update this helper"
    for job in jobs:
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
    config["global"] = {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval}
    config["rule_files"] = [str(path) for path in RULE_FILES]
    return config


def parse_time(text: str) -> float:
    """An RFC 3339 time from Prometheus's API (nanoseconds, Z) as a Unix time."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


@dataclass
class Prometheus:
    url: str
    log: Path
    proc: subprocess.Popen[bytes]

    def api(self, path: str, **params: str) -> Any:
        resp = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body = resp.json()
        assert resp.status_code == 200 and body["status"] == "success", f"{path} {params}: {resp.text[:2000]}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` gives now (each item: ``metric`` labels and ``value`` [time, "text"])."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", f"{expr} gave a {data['resultType']}"
        result: list[dict[str, Any]] = data["result"]
        return result

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")

    def scraped_all_after(self, moment: float) -> bool:
        """Every target answered its last scrape, and each of those scrapes began after ``moment``."""
        self.check_alive()
        active = self.api("targets", state="active")["activeTargets"]
        return bool(active) and all(t["health"] == "up" and parse_time(t["lastScrape"]) > moment for t in active)

    def evaluated_all_after(self, moment: float) -> bool:
        """Every rule group was evaluated after ``moment``."""
        self.check_alive()
        groups = self.api("rules")["groups"]
        return bool(groups) and all(parse_time(g["lastEvaluation"]) > moment for g in groups)


@contextlib.contextmanager
def running_prometheus(config: dict[str, Any], workdir: Path, timeout: float = 60.0) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    assert binary is not None, "Debian's prometheus package is missing: run bash deploy/local/bootstrap.sh test"
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1d",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    prometheus = Prometheus(f"http://127.0.0.1:{port}", log, proc)
    try:
        deadline = time.monotonic() + timeout
        while True:
            prometheus.check_alive()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{prometheus.url}/-/ready", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus not ready after {timeout:.0f}s; see {log}")
            time.sleep(0.2)
        yield prometheus
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
