from __future__ import annotations

import hashlib
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.cli import FILES
from services.intake.config import IntakeConfig, token_matches
from services.notifier.config import NotifyConfig
from services.router.rules import RoutingConfig
from services.sla.policy import SlaConfig
from shared.infra.config import (
    ConfigError,
    ConfigProblem,
    ConfigWatcher,
    load_yaml_model,
    parse_duration,
    parse_yaml_text,
)
from shared.rules.oncall import TeamsConfig

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


INLINE_TOKEN = "inline-token-0123456789abcdef"
ENV_TOKEN = "env-token-0123456789abcdef"
HOOK_URL = "https://hooks.example.test/hook-path-that-is-a-secret"
INTAKE_WITH_ENV = f"""integrations:
  - name: am
    format: alertmanager
    token: {INLINE_TOKEN}
api_clients:
  - name: console
    token_env: TL_TEST_API_TOKEN
"""
NOTIFY_WITH_ENV = f"""teams:
  operations:
    email: [ops@example.test]
    channels:
      - type: webhook
        name: ops-chat
        url: {HOOK_URL}
        secret_env: TL_TEST_HOOK_SECRET
      - type: slack
        name: ops-slack
        url_env: TL_TEST_SLACK_URL
"""


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
@pytest.mark.parametrize(
    ("filename", "model", "text", "where", "variable"),
    [
        ("intake.yaml", IntakeConfig, INTAKE_WITH_ENV, "intake.yaml:7: api_clients.0.token_env", "TL_TEST_API_TOKEN"),
        (
            "notify.yaml",
            NotifyConfig,
            NOTIFY_WITH_ENV,
            "notify.yaml:8: teams.operations.channels.0.webhook.secret_env",
            "TL_TEST_HOOK_SECRET",
        ),
        (
            "notify.yaml",
            NotifyConfig,
            NOTIFY_WITH_ENV,
            "notify.yaml:11: teams.operations.channels.1.slack.url_env",
            "TL_TEST_SLACK_URL",
        ),
    ],
)
def test_an_unset_or_empty_secret_variable_is_a_config_error_naming_file_line_field_and_variable(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    value: str | None,
    filename: str,
    model: type,
    text: str,
    where: str,
    variable: str,
) -> None:
    for name in ("TL_TEST_API_TOKEN", "TL_TEST_HOOK_SECRET", "TL_TEST_SLACK_URL"):
        monkeypatch.setenv(name, "https://hooks.example.test/set-from-env-0123456789")
    if value is None:
        monkeypatch.delenv(variable)
    else:
        monkeypatch.setenv(variable, value)
    path = tmp_path / filename
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_yaml_model(path, model)
    message = str(exc.value)
    assert f"{tmp_path / where}: Value error, environment variable {variable} is unset or empty" == message
    assert INLINE_TOKEN not in message and HOOK_URL not in message and "set-from-env" not in message


def test_an_intake_token_from_the_environment_needs_16_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TL_TEST_API_TOKEN", "short-one")
    with pytest.raises(ConfigError) as exc:
        parse_yaml_text(INTAKE_WITH_ENV, IntakeConfig, filename="intake.yaml")
    assert "intake.yaml:7: api_clients.0.token_env:" in str(exc.value)
    assert "TL_TEST_API_TOKEN must hold a token of at least 16 characters" in str(exc.value)
    assert "short-one" not in str(exc.value)


def test_a_short_inline_token_is_refused_without_showing_it() -> None:
    text = "api_clients:\n  - {name: c, token: tiny-secret-x}\n"  # not on the line a traceback shows
    with pytest.raises(ConfigError) as exc:
        parse_yaml_text(text, IntakeConfig, filename="intake.yaml")
    assert str(exc.value) == "intake.yaml:2: api_clients.0.token: Value error, a token must have at least 16 characters"
    assert "tiny-secret-x" not in "".join(traceback.format_exception(exc.value)), "nor does a traceback"


def test_a_bad_inline_url_is_refused_without_showing_it_even_in_a_traceback() -> None:
    url = "ftp://hooks.example.test/a-secret-path"
    with pytest.raises(ConfigError) as exc:
        parse_yaml_text(
            f"teams:\n  o:\n    channels:\n      - {{type: webhook, name: a, url: '{url}'}}\n",
            NotifyConfig,
            filename="n",
        )
    assert str(exc.value).startswith("n:4: teams.o.channels.0.webhook.url: Value error, must be an http")
    assert url not in "".join(traceback.format_exception(exc.value))


def test_intake_tokens_are_secret_in_every_rendering_and_still_match(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TL_TEST_API_TOKEN", ENV_TOKEN)
    config = parse_yaml_text(INTAKE_WITH_ENV, IntakeConfig, filename="intake.yaml")
    for shown in (repr(config), str(config), config.model_dump_json(), repr(config.integrations[0].secret())):
        assert INLINE_TOKEN not in shown and ENV_TOKEN not in shown
    client = config.api_client_for(ENV_TOKEN)
    assert client is not None and client.name == "console"
    assert config.api_client_for(INLINE_TOKEN) is None
    assert token_matches(config.integrations[0].secret(), INLINE_TOKEN)
    assert not token_matches(config.integrations[0].secret(), ENV_TOKEN)


def test_a_credential_given_by_its_hash_accepts_its_token_and_no_other() -> None:
    digest = hashlib.sha256(INLINE_TOKEN.encode()).hexdigest()
    text = f"integrations:\n  - {{name: am, format: alertmanager, token_sha256: {digest}}}\n"
    config = parse_yaml_text(text, IntakeConfig, filename="intake.yaml")
    (integration,) = config.integrations
    assert integration.accepts(INLINE_TOKEN)
    assert not integration.accepts(ENV_TOKEN)
    assert not integration.accepts("")
    assert INLINE_TOKEN not in text, "the file holds no token"


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("token_sha256: ABC", "intake.yaml:2: integrations.0.token_sha256: String should match pattern"),
        (f"token_sha256: {'A' * 64}", "intake.yaml:2: integrations.0.token_sha256: String should match pattern"),
        (f"token: {INLINE_TOKEN}, token_sha256: {'a' * 64}", "exactly one of 'token', 'token_env' or 'token_sha256'"),
    ],
)
def test_a_token_hash_is_64_lower_case_hex_digits_and_the_only_token_source(entry: str, problem: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_yaml_text(
            f"integrations:\n  - {{name: am, format: generic, {entry}}}\n", IntakeConfig, filename="intake.yaml"
        )
    assert problem in str(exc.value)


@pytest.mark.parametrize("absurd", [1e20, 2**70, "999999999999d", "36501d", float("inf"), float("nan")])
def test_an_absurd_duration_is_a_value_error_naming_the_limit(absurd: object) -> None:
    with pytest.raises(ValueError, match=r"at most 36500 days|not NaN"):
        parse_duration(absurd)
    assert parse_duration("36500d").days == 36_500


ROUTING_OK = "route:\n  team: ops\n"


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        (ROUTING_OK + "  group_by: [a]\x00\n", 3, "character U+0000 is not allowed"),
        (ROUTING_OK + "  group_by: [\x07]\n", 3, "character U+0007 is not allowed"),
        (ROUTING_OK + "  routes:\n    - {name: a, team: b, until: 2026-02-30}\n", 4, "not a timestamp: day is out of"),
        (ROUTING_OK + "  x: !!timestamp soon\n", 3, "not a timestamp"),
        (ROUTING_OK + "  x: !!float ''\n", 3, "not a float"),
        (ROUTING_OK + "  x: " + "9" * 5000 + "\n", 3, "an integer of more than 4,300 digits"),
        (ROUTING_OK + "  ? [a, b]\n  : x\n", 3, "found unhashable key"),
        (ROUTING_OK + "  <<: 5\n", 3, "expected a mapping or list of mappings for merging"),
        (ROUTING_OK + "  x: " + "[" * 3000 + "]" * 3000 + "\n", None, "nested too deeply"),
    ],
    ids=[
        "NUL",
        "control character",
        "a date that does not exist",
        "a bad timestamp tag",
        "an empty float tag",
        "a 5,000-digit integer",
        "an unhashable key",
        "a scalar merge",
        "deep nesting",
    ],
)
def test_yaml_that_pyyaml_cannot_read_is_a_config_error_naming_the_line(
    text: str, line: int | None, problem: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_yaml_text(text, RoutingConfig, filename="routing.yaml")
    assert [(p.file, p.line) for p in exc.value.problems] == [("routing.yaml", line)]
    assert problem in str(exc.value)


@pytest.mark.parametrize("tagged", ["!!int S3CRET-int-token-0123", "!!float 0x_S3CRET-float-0123", "!!bool S3CRET-b"])
def test_a_value_yaml_cannot_build_is_not_quoted_in_the_error(tagged: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_yaml_text(f"integrations:\n  - name: am\n    token: {tagged}\n", IntakeConfig, filename="intake.yaml")
    assert "S3CRET" not in str(exc.value) and "intake.yaml:3: a value YAML cannot read: not a " in str(exc.value)


def test_a_running_config_survives_an_edit_pyyaml_cannot_read_and_says_where(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING_OK)
    watcher = ConfigWatcher(path, RoutingConfig)
    path.write_text(ROUTING_OK + "  routes:\n    - {name: a, team: b, since: 2026-02-30}\n")
    assert watcher.poll() == "rejected"
    assert watcher.current.route.team == "ops"
    assert (
        str(watcher.last_error) == f"{path}:4: a value YAML cannot read: not a timestamp: day is out of range for month"
    )


SHIPPED = ["intake.yaml", "routing.yaml", "projects.yaml", "sla.yaml", "notify.yaml", "teams.yaml"]
FRAGMENTS = [
    "\x00",
    "\x07",
    "2026-02-30",
    "!!timestamp ",
    "!!float ",
    "!!binary ",
    "<<: ",
    "? ",
    "&a ",
    "*a",
    "[",
    "]",
    "{",
    "}",
    ":",
    "- ",
    "'",
    '"',
    "\t",
    "\n",
    "9" * 4400,
    "~",
    "#",
]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.sampled_from(SHIPPED),
    st.lists(st.tuples(st.integers(min_value=0), st.sampled_from(FRAGMENTS)), min_size=1, max_size=4),
)
def test_any_edit_of_a_shipped_config_file_is_read_or_refused_as_a_config_error(
    name: str, edits: list[tuple[int, str]]
) -> None:
    text = (LOCAL / name).read_text()
    for offset, fragment in edits:
        at = offset % (len(text) + 1)
        text = text[:at] + fragment + text[at:]
    problems: list[ConfigProblem] = []
    try:
        parse_yaml_text(text, FILES[name], filename=name)
    except ConfigError as exc:  # anything else (a traceback) fails the test
        problems = exc.problems
    assert all(p.file == name for p in problems)
