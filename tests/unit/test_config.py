from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.intake.config import IntakeConfig
from services.notifier.config import NotifyConfig
from services.router.rules import RoutingConfig
from services.sla.policy import SlaConfig
from shared.config import ConfigError, ConfigWatcher, load_yaml_model, parse_duration, parse_yaml_text
from shared.oncall import TeamsConfig

LOCAL = Path(__file__).resolve().parents[2] / "deploy" / "local" / "config"


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("intake.yaml", IntakeConfig),
        ("routing.yaml", RoutingConfig),
        ("sla.yaml", SlaConfig),
        ("notify.yaml", NotifyConfig),
    ],
)
def test_the_shipped_local_config_is_valid(name: str, model: type) -> None:
    load_yaml_model(LOCAL / name, model)


def test_error_names_file_line_and_field() -> None:
    text = "route:\n  team: ops\n  routes:\n    - name: a\n      matchers: ['x']\n    - name: b\n      priority: P9\n"
    with pytest.raises(ConfigError) as exc:
        parse_yaml_text(text, RoutingConfig, filename="routing.yaml")
    problems = {(p.line, p.field) for p in exc.value.problems}
    assert (5, "route.routes.0.matchers") in problems
    assert (7, "route.routes.1.priority") in problems
    assert "routing.yaml:7: route.routes.1.priority:" in str(exc.value)


def test_yaml_syntax_error_names_the_line() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_yaml_text("teams:\n  ops: [a\n", NotifyConfig, filename="notify.yaml")
    assert exc.value.problems[0].line is not None
    assert "YAML syntax" in str(exc.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_yaml_model(tmp_path / "nope.yaml", SlaConfig)


def test_invalid_regex_is_reported() -> None:
    with pytest.raises(ConfigError, match="invalid regular expression"):
        parse_yaml_text(
            "route:\n  team: o\n  routes:\n    - {name: a, team: b, match_re: {x: '('}}\n", RoutingConfig, filename="r"
        )


def test_sla_needs_a_default_policy_and_ordered_levels() -> None:
    with pytest.raises(ConfigError, match="'default' is required"):
        parse_yaml_text(
            "policies:\n  gold: {acknowledge: {P1: 5m}, escalation: [{after: 0s, team: owner}]}\n",
            SlaConfig,
            filename="s",
        )
    text = "policies:\n  default:\n    acknowledge: {P1: 5m}\n    escalation: [{after: 10m, team: a}, {after: 5m, team: b}]\n"
    with pytest.raises(ConfigError, match="in order"):
        parse_yaml_text(text, SlaConfig, filename="s")


def test_intake_credentials_need_exactly_one_token_source() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        parse_yaml_text("integrations:\n  - {name: a, format: generic}\n", IntakeConfig, filename="i")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("250ms", timedelta(milliseconds=250)),
        (90, timedelta(seconds=90)),
        (1.5, timedelta(seconds=1.5)),
    ],
)
def test_durations(text: object, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["", "soon", "5x", -1, True, None, "m"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@given(st.integers(0, 30), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))
def test_duration_parts_add_up(d: int, h: int, m: int, s: int) -> None:
    text = f"{d}d{h}h{m}m{s}s"
    assert parse_duration(text) == timedelta(days=d, hours=h, minutes=m, seconds=s)


def test_an_optional_file_may_be_missing_and_is_picked_up_when_it_appears(tmp_path: Path) -> None:
    path = tmp_path / "teams.yaml"
    with pytest.raises(ConfigError, match="cannot read"):
        ConfigWatcher(path, TeamsConfig)
    watcher = ConfigWatcher(path, TeamsConfig, optional=True)
    assert watcher.current == TeamsConfig()
    assert watcher.poll() == "unchanged"
    path.write_text("people: {olga: {}}\nteams: {ops: {members: [olga]}}\n")
    assert watcher.poll() == "reloaded"
    assert watcher.current.teams["ops"].members == ["olga"]
