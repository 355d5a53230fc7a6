from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from services.cli import main
from services.router.rules import RoutingConfig
from shared.infra.config import ConfigWatcher

LOCAL = Path(__file__).resolve().parents[2] / "deploy" / "local" / "config"


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out), out.getvalue()


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(LOCAL, target)
    return target


def test_config_check_accepts_the_shipped_config(config_dir: Path) -> None:
    code, out = run("config", "check", "--config-dir", str(config_dir))
    assert code == 0
    assert out.count("ok: ") == 6
    assert "warning" not in out


def test_config_check_says_which_channels_each_team_reaches_without_urls_or_secrets(config_dir: Path) -> None:
    code, out = run("config", "check", "--config-dir", str(config_dir))
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith("notify.yaml: ")]
    assert lines == [
        "notify.yaml: implementation reaches email impl@example.test, slack impl-slack, feishu impl-feishu, "
        "teams impl-teams, webhook impl-hook",
        "notify.yaml: operations reaches email ops@example.test, slack ops-slack, dingtalk ops-dingtalk, "
        "wecom ops-wecom, webhook ops-hook",
        "notify.yaml: ops-leads reaches email ops-leads@example.test",
    ]
    shipped = (config_dir / "notify.yaml").read_text()
    for secret in ("http://127.0.0.1:8099/hooks/operations", "demo-webhook-secret-operations", "xoxb-", "SECdemo"):
        assert secret in shipped
        assert secret not in out
    assert "http" not in out


def test_config_check_lists_intake_doors_without_tokens_or_signing_secrets(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAFANA_HMAC", "grafana-signing-secret-0123456789")
    intake = config_dir / "intake.yaml"
    intake.write_text(
        intake.read_text().replace(
            "integrations:\n",
            "integrations:\n"
            "  - name: grafana\n"
            "    format: grafana\n"
            "    token: grafana-token-0123456789abcdef\n"
            "    signing_secret_env: GRAFANA_HMAC\n"
            "    heartbeat: {every: 1m, grace: 3m}\n"
            "    rate_limit: {requests: 100, per: 1s, burst: 200}\n",
        )
    )
    code, out = run("config", "check", "--config-dir", str(config_dir))
    assert code == 0, out
    doors = [line for line in out.splitlines() if line.startswith("intake.yaml: ")]
    assert doors == [
        "intake.yaml: integration grafana: format grafana, signed, heartbeat grafana every 60 s, grace 180 s, "
        "rate limit 100 requests per 1 s (burst 200)",
        "intake.yaml: integration alertmanager: format alertmanager, no rate limit",
        "intake.yaml: integration support-portal: format generic, no rate limit",
        "intake.yaml: integration pagerduty-senders: format pagerduty, no rate limit",
        "intake.yaml: api client ops-console: role responder, acts for *",
        "intake.yaml: form /feedback/webshop (customer acme), rate limit 20 requests per 60 s (burst 20)",
        "intake.yaml: mail to support@acme.example (project webshop, customer acme)",
    ]
    for secret in ("grafana-token-0123456789abcdef", "grafana-signing-secret", "demo-webshop-form-token", "demo-"):
        assert secret not in out


def test_config_check_refuses_an_unset_secret_variable_naming_it(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TL_TEST_UNSET_SECRET", raising=False)
    notify = (config_dir / "notify.yaml").read_text()
    (config_dir / "notify.yaml").write_text(
        notify.replace("secret: demo-webhook-secret-operations", "secret_env: TL_TEST_UNSET_SECRET")
    )
    code, out = run("config", "check", "--config-dir", str(config_dir))
    assert code == 1
    assert (
        f"error: {config_dir / 'notify.yaml'}:11: teams.operations.channels.3.webhook.secret_env: "
        "Value error, environment variable TL_TEST_UNSET_SECRET is unset or empty"
    ) in out
    assert "reaches" not in out and "http" not in out


def test_config_check_names_file_line_and_field_and_fails(config_dir: Path) -> None:
    (config_dir / "sla.yaml").write_text(
        "policies:\n  default:\n    acknowledge: {P1: soon}\n    escalation: [{after: 0s, team: owner}]\n"
    )
    code, out = run("config", "check", "--config-dir", str(config_dir))
    assert code == 1
    assert f"error: {config_dir / 'sla.yaml'}:3: policies.default.acknowledge.P1:" in out
    assert "not a duration" in out


def test_config_check_warns_about_teams_without_channels(config_dir: Path) -> None:
    routing = (config_dir / "routing.yaml").read_text().replace("team: implementation", "team: nobody-home", 1)
    (config_dir / "routing.yaml").write_text(routing)
    code, out = run("config", "check", "--config-dir", str(config_dir))
    assert code == 0
    assert "warning: routing.yaml route root > customer-feedback: team 'nobody-home' has no channels" in out


def test_routes_test_explains_the_decision(config_dir: Path) -> None:
    code, out = run("routes", "test", "--config-dir", str(config_dir), "service=database", "--severity", "critical")
    assert code == 0
    assert "route:    root > database-critical" in out
    assert "priority: P1" in out
    code, out = run("routes", "test", "--config-dir", str(config_dir), "--kind", "feedback")
    assert "owner:    implementation" in out


def test_routes_show_prints_the_tree(config_dir: Path) -> None:
    code, out = run("routes", "show", "--config-dir", str(config_dir))
    assert code == 0
    assert '  database-critical {service="database", severity=~"critical|error"} -> operations P1 default' in out


def test_the_installed_command_runs() -> None:
    exe = Path(sys.executable).parent / "ticketloop"
    result = subprocess.run(
        [str(exe), "routes", "test", "--config-dir", str(LOCAL), "service=checkout"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "owner:    implementation" in result.stdout


def test_watcher_reloads_good_files_and_keeps_running_rules_on_bad_ones(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text("route:\n  team: a\n")
    watcher = ConfigWatcher(path, RoutingConfig)
    assert watcher.poll() == "unchanged"
    path.write_text("route:\n  team: b\n")
    assert watcher.poll() == "reloaded"
    assert watcher.current.route.team == "b"
    path.write_text("route:\n  routes: []\n")
    assert watcher.poll() == "rejected"
    assert watcher.current.route.team == "b", "a bad file never replaces the running rules"
    assert watcher.last_error is not None and "route.team is required" in str(watcher.last_error)
    assert watcher.poll() == "unchanged", "the same bad file is reported once"
    path.unlink()
    assert watcher.poll() == "rejected"
    assert watcher.current.route.team == "b"


def test_routes_test_says_when_a_maintenance_window_mutes_it(config_dir: Path) -> None:
    routing = config_dir / "routing.yaml"
    routing.write_text(
        routing.read_text() + "maintenance_windows:\n  - name: patching\n    matchers: ['service=\"database\"']\n"
        '    time_zone: Asia/Shanghai\n    start: "02:00"\n    end: "04:00"\n'
    )
    args = ("routes", "test", "--config-dir", str(config_dir), "service=database")
    code, out = run(*args, "--at", "2026-11-25T03:00:00+08:00")
    assert code == 0
    assert "muted:    by patching until 2026-11-25T04:00:00+08:00" in out
    _, out = run(*args, "--at", "2026-11-25T05:00:00+08:00")
    assert "muted:" not in out


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+00:00", "9999-12-31T23:00:00+00:00", "2026-02-30T00:00:00"])
def test_routes_test_refuses_a_time_the_loop_cannot_compute_with(
    config_dir: Path, at: str, capsys: pytest.CaptureFixture[str]
) -> None:
    routing = config_dir / "routing.yaml"
    routing.write_text(
        routing.read_text() + "maintenance_windows:\n  - name: nightly\n    matchers: ['service=\"database\"']\n"
        '    time_zone: Asia/Shanghai\n    start: "23:00"\n    end: "01:30"\n'
    )
    with pytest.raises(SystemExit) as exc:
        run("routes", "test", "--config-dir", str(config_dir), "--at", at, "service=database")
    assert exc.value.code == 2 and f"argument --at: not an ISO 8601 time {at!r}: " in capsys.readouterr().err


def test_a_go_live_the_loop_cannot_compute_with_is_a_config_error(config_dir: Path) -> None:
    projects = config_dir / "projects.yaml"
    projects.write_text(projects.read_text().replace("2026-", "9999-", 1))
    code, out = run("config", "check", "--config-dir", str(config_dir))
    assert code == 1 and "go_live: Value error, a time between the years 1970 and 9000 (UTC)" in out, out


def test_routes_test_reads_severity_source_and_kind_from_labels_as_matchers_see_them(config_dir: Path) -> None:
    args = ("routes", "test", "--config-dir", str(config_dir), "service=database")
    as_label, as_option = run(*args, "severity=critical")[1], run(*args, "--severity", "critical")[1]
    assert as_label == as_option and "priority: P1" in as_label, as_label
    assert "priority: P1" not in run(*args)[1], "a warning by default"
    assert run(*args, "severity=critical", "--severity", "warning") == (
        1,
        "error: --severity warning and the label severity=critical disagree: give one\n",
    )
    code, out = run(*args, "kind=complaint")
    assert code == 1 and "not 'warning' and 'complaint'" in out


def test_teams_yaml_is_optional(config_dir: Path) -> None:
    (config_dir / "teams.yaml").unlink()
    code, out = run("config", "check", "--config-dir", str(config_dir))
    assert code == 0 and "skipped:" in out and "teams.yaml (optional, not there)" in out


def test_config_check_warns_about_years_china_has_not_published(config_dir: Path) -> None:
    from datetime import date

    from services.cli import cross_check
    from services.sla.calendar import china_years
    from services.sla.policy import SlaConfig

    sla = SlaConfig.model_validate(
        {
            "calendars": {"cn": {"china": True, "time_zone": "Asia/Shanghai"}},
            "policies": {"default": {"acknowledge": {"P1": "1h"}, "escalation": [{"after": 0, "team": "owner"}]}},
        }
    )
    last = china_years()[1]
    [warning] = cross_check({"sla.yaml": sla}, today=date(last, 12, 1))
    assert warning.startswith(f"sla.yaml calendars.cn: China's official holidays for {last + 1} are not known")
    assert cross_check({"sla.yaml": sla}, today=date(last - 1, 6, 1)) == []


def test_config_check_warns_about_a_lead_level_for_a_team_without_a_lead(config_dir: Path) -> None:
    sla = (config_dir / "sla.yaml").read_text().replace("team: ops-leads", "team: ops-leads\n        lead: true", 1)
    (config_dir / "sla.yaml").write_text(sla)
    code, out = run("config", "check", "--config-dir", str(config_dir))
    assert code == 0 and "lead of" not in out, "ops-leads has a lead in teams.yaml"
    teams = (config_dir / "teams.yaml").read_text().replace("    lead: lena\n", "", 1)
    (config_dir / "teams.yaml").write_text(teams)
    code, out = run("config", "check", "--config-dir", str(config_dir))
    assert code == 0
    assert "warning: sla.yaml policies.default.escalation.1: lead of 'ops-leads', but teams.yaml names no lead" in out
    (config_dir / "teams.yaml").write_text(teams.replace("teams:", "teams: [", 1))  # teams.yaml unreadable
    code, out = run("config", "check", "--config-dir", str(config_dir))
    assert code == 1 and "teams.yaml" in out and "lead of" not in out, "only the error, not a lead it cannot read"
