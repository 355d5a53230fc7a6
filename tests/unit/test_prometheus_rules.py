"""ticketloop's Prometheus rules are valid and do what they say: ``promtool check`` on the scrape config (which loads
the rule files) and ``promtool test rules`` on deploy/prometheus/tests/ (series in, recorded values and alerts out).
promtool comes with Debian's ``prometheus`` package, which ``deploy/local/bootstrap.sh test`` installs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy/prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.test.yml"))


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is missing: install Debian's prometheus package (bash deploy/local/bootstrap.sh test)")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60, check=False, cwd=REPO)


def rules() -> list[dict[str, Any]]:
    return [
        rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]
    ]


def test_the_scrape_config_and_its_rule_files_are_valid() -> None:
    assert RULE_FILES
    done = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in done.stdout


def test_the_rules_pass_their_promtool_tests() -> None:
    assert RULE_TESTS
    done = promtool("test", "rules", *map(str, RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_rule_file_and_every_alert_is_tested() -> None:
    tests = [yaml.safe_load(path.read_text()) for path in RULE_TESTS]
    tested_files = {
        (path.parent / f).resolve() for path, t in zip(RULE_TESTS, tests, strict=True) for f in t["rule_files"]
    }
    assert set(RULE_FILES) <= tested_files
    tested_alerts = {
        case["alertname"] for t in tests for test in t["tests"] for case in test.get("alert_rule_test", [])
    }
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert alerts and alerts <= tested_alerts, f"alerts without a promtool test: {sorted(alerts - tested_alerts)}"


def test_rule_names_follow_the_conventions() -> None:
    for rule in rules():
        if "record" in rule:
            assert rule["record"].startswith("ticketloop:"), rule["record"]
            assert rule["record"].count(":") == 2, f"level:metric:operations: {rule['record']}"
        else:
            assert rule["alert"].startswith("Ticketloop"), rule["alert"]
            assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
            assert "ticket_id" not in rule["expr"], "ticket ids never become labels"


def test_compose_mounts_the_rules_where_the_scrape_config_reads_them() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    mounts = dict(v.removesuffix(":ro").split(":", 1) for v in compose["services"]["prometheus"]["volumes"])
    config_in_container = Path(mounts["./deploy/prometheus/prometheus.yml"])
    rule_globs = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["rule_files"]
    assert rule_globs == ["rules/*.yml"]
    assert Path(mounts["./deploy/prometheus/rules"]) == config_in_container.parent / "rules"
