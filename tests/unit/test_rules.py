from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.router.rules import Matcher, Op, RoutingConfig, decide, describe, event_labels, parse_matcher
from shared.events import EventKind, Severity
from shared.rules.matchers import SEEN_CHARS, SEEN_MAX
from shared.rules.silences import Silence, silenced_by
from tests.unit.factories import event

names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
values = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
label_sets = st.dictionaries(names, st.text(alphabet="abcxyz0123-", max_size=8), max_size=6)


def cfg(tree: dict[str, Any], **extra: Any) -> RoutingConfig:
    return RoutingConfig.model_validate({"route": tree, **extra})


TREE = cfg(
    {
        "team": "ops",
        "policy": "default",
        "routes": [
            {
                "name": "db",
                "matchers": ['service="db"'],
                "team": "dba",
                "priority": "P1",
                "policy": "gold",
                "routes": [
                    {"name": "db-eu", "matchers": ['region="eu"'], "person": "erik"},
                    {"name": "db-test", "matchers": ['env=~"test|dev"'], "priority": "P4"},
                ],
            },
            {"name": "feedback", "matchers": ['kind="feedback"'], "team": "impl", "continue": True},
            {"name": "acme", "match": {"customer": "acme"}, "team": "acme-csm", "continue": True},
            {"name": "web", "matchers": ['service="web"'], "team": "web", "channels": ["webhook"]},
        ],
    }
)


def test_nested_routes_inherit_from_their_parent() -> None:
    d = decide({"service": "db", "region": "eu"}, Severity.warning, TREE)
    assert (d.team, d.person, d.priority, d.policy, d.rule) == ("dba", "erik", "P1", "gold", "root > db > db-eu")
    d = decide({"service": "db", "env": "dev"}, Severity.critical, TREE)
    assert (d.team, d.person, d.priority, d.rule) == ("dba", None, "P4", "root > db > db-test")
    d = decide({"service": "db"}, Severity.critical, TREE)
    assert (d.team, d.rule) == ("dba", "root > db"), "no child matched: the node itself routes"


def test_root_routes_the_rest_with_priority_from_severity() -> None:
    d = decide({"service": "mail"}, Severity.error, TREE)
    assert (d.team, d.priority, d.policy, d.rule, d.watchers) == ("ops", "P2", "default", "root", ())
    assert "route root: owner ops, priority P2" in d.explain()


def test_continue_adds_the_later_matches_as_watchers() -> None:
    d = decide({"kind": "feedback", "customer": "acme", "service": "web"}, Severity.info, TREE)
    assert (d.team, d.watchers) == ("impl", ("acme-csm", "web"))
    assert "watchers acme-csm, web" in d.explain()
    d = decide({"customer": "acme"}, Severity.info, TREE)
    assert (d.team, d.watchers) == ("acme-csm", ())


def test_route_channels_are_carried() -> None:
    assert decide({"service": "web"}, Severity.info, TREE).channels == ("webhook",)
    assert decide({"service": "db"}, Severity.info, TREE).channels == ()


def test_pseudo_labels_severity_source_kind() -> None:
    c = cfg(
        {
            "team": "ops",
            "routes": [
                {"name": "fb", "matchers": ['kind="feedback"', 'source="am"', 'severity=~"crit.*"'], "team": "impl"}
            ],
        }
    )
    feedback, alert = event(kind=EventKind.feedback), event(kind=EventKind.alert)
    assert decide(event_labels(feedback), feedback.severity, c).team == "impl"
    assert decide(event_labels(alert), alert.severity, c).team == "ops"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('a="b"', Matcher("a", Op.eq, "b")),
        ("a = b", Matcher("a", Op.eq, "b")),
        ('a!="b c"', Matcher("a", Op.ne, "b c")),
        ('a=~"x|y"', Matcher("a", Op.re, "x|y")),
        ('a!~".*"', Matcher("a", Op.nre, ".*")),
        ('a=""', Matcher("a", Op.eq, "")),
        ('a="say \\"hi\\""', Matcher("a", Op.eq, 'say "hi"')),
    ],
)
def test_parse_matcher(text: str, expected: Matcher) -> None:
    assert parse_matcher(text) == expected


@pytest.mark.parametrize("bad", ["", "a", "=b", '1a="b"', 'a=="b"', 'a=~"("', 'a~"b"'])
def test_bad_matchers_are_rejected_with_the_reason(bad: str) -> None:
    with pytest.raises(ValueError, match=r"matcher|regular expression"):
        parse_matcher(bad)


def test_matcher_semantics_like_alertmanager() -> None:
    assert parse_matcher('env=""').matches({}), "a missing label equals the empty string"
    assert not parse_matcher('env!=""').matches({})
    assert parse_matcher('env=~"prod"').matches({"env": "prod"})
    assert not parse_matcher('env=~"prod"').matches({"env": "preprod"}), "regexes are anchored"
    assert parse_matcher('env!~"prod"').matches({"env": "preprod"})


@pytest.mark.timeout(60)  # Python's re backtracks for hours on this; RE2 answers in microseconds
@pytest.mark.parametrize("pattern", ["(a+)+", "(a|aa)+", "(a*)*b", "(\\w+\\.?)+"])
def test_a_regex_matcher_takes_time_linear_in_the_label_whatever_the_pattern(pattern: str) -> None:
    labels = {"instance": "a" * 40 + "!"}  # the last character fails every way of matching the a's
    assert not Matcher("instance", Op.re, pattern).matches(labels)
    assert Matcher("instance", Op.nre, pattern).matches(labels)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('a=~"(x)\\\\1"', "invalid escape sequence"),
        ('a=~"(?=x)x"', "invalid perl operator: (?="),
        ('a=~"(?<!x)y"', "invalid perl operator: (?<!"),
        ('a=~"x{2,1}"', "invalid repetition size"),
    ],
)
def test_a_regex_alertmanager_would_refuse_is_refused_saying_why(text: str, why: str) -> None:
    with pytest.raises(ValueError, match="invalid regular expression") as exc:
        parse_matcher(text)
    assert why in str(exc.value)


def test_regexes_read_as_go_reads_them() -> None:
    assert parse_matcher('city=~"漢.字"').matches({"city": "漢x字"}), "a dot is one character, not one byte"
    assert not parse_matcher('n=~"\\\\d+"').matches({"n": "\u0661\u0662"}), "digits are ASCII digits, as in Go"
    assert parse_matcher('n=~"\\\\d+"').matches({"n": "12"})


def test_a_regex_matcher_answers_the_same_for_values_it_remembers_and_after_it_forgets() -> None:
    matcher = Matcher("host", Op.re, "web-[0-9]+")
    values = [f"web-{i}" if i % 3 else f"db-{i}" for i in range(3 * SEEN_MAX)] + ["x" * (SEEN_CHARS + 1)]
    expected = [v.startswith("web-") for v in values]
    for _ in range(2):  # the second round reads remembered answers (and the forgotten ones again)
        assert [matcher.matches({"host": v}) for v in values] == expected


def test_a_stored_silence_whose_regex_re2_cannot_read_matches_nothing_instead_of_failing() -> None:
    now = datetime(2026, 12, 6, tzinfo=UTC)
    old = Silence(
        silence_id="s1",
        matchers=['service="db"', 'host=~"(?!canary).*"'],
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=1),
        created_by="olga",
        comment="made before matchers were RE2's",
        created_at=now - timedelta(hours=1),
    )
    assert silenced_by({"service": "db", "host": "db-1"}, [old], now) is None


@given(names, values)
def test_a_matcher_prints_back_to_itself(name: str, value: str) -> None:
    for op in Op:
        if op in (Op.re, Op.nre):
            continue
        m = Matcher(name, op, value)
        assert parse_matcher(str(m)) == m


@given(label_sets, names, st.text(alphabet="abc", max_size=4))
def test_eq_and_ne_are_complements_as_are_re_and_nre(labels: dict[str, str], name: str, value: str) -> None:
    assert Matcher(name, Op.eq, value).matches(labels) != Matcher(name, Op.ne, value).matches(labels)
    assert Matcher(name, Op.re, value).matches(labels) != Matcher(name, Op.nre, value).matches(labels)


@given(label_sets)
def test_routing_is_total_and_the_owner_never_watches(labels: dict[str, str]) -> None:
    d = decide(labels, Severity.warning, TREE)
    assert d.team in {"ops", "dba", "impl", "acme-csm", "web"}
    assert d.team not in d.watchers
    assert d.priority in {"P1", "P2", "P3", "P4"}


@given(label_sets)
def test_a_route_on_a_subset_of_the_labels_matches(labels: dict[str, str]) -> None:
    subset = dict(list(labels.items())[: len(labels) // 2])
    c = cfg({"team": "ops", "routes": [{"name": "r", "match": subset, "team": "t"}]})
    assert decide(labels, Severity.info, c).team == "t"


def test_config_errors() -> None:
    with pytest.raises(ValueError, match=r"route\.team is required"):
        cfg({"routes": []})
    with pytest.raises(ValueError, match="cannot have matchers"):
        cfg({"team": "ops", "matchers": ['a="b"']})
    with pytest.raises(ValueError, match=r"matchers\.0"):
        cfg({"team": "ops", "routes": [{"team": "x", "matchers": ["nonsense"]}]})
    with pytest.raises(ValueError, match="priority"):
        cfg({"team": "ops", "routes": [{"team": "x", "priority": "P9"}]})


def test_describe_lists_every_route_with_effective_settings() -> None:
    rows = {r["route"]: r for r in describe(TREE)}
    assert rows["root > db > db-eu"]["team"] == "dba"
    assert rows["root > db > db-eu"]["person"] == "erik"
    assert rows["root > db > db-eu"]["policy"] == "gold"
    assert rows["root"]["priority"] == "(from severity)"


def test_group_wait_and_interval_are_inherited_and_overridable() -> None:
    config = RoutingConfig.model_validate(
        {
            "route": {
                "team": "ops",
                "group_wait": "30s",
                "group_interval": "5m",
                "routes": [
                    {"name": "db", "matchers": ['service="db"'], "group_by": ["cluster"]},
                    {"name": "web", "matchers": ['service="web"'], "group_wait": 0},
                ],
            }
        }
    )
    db = decide({"service": "db"}, Severity.error, config)
    assert (db.group_wait, db.group_interval) == (timedelta(seconds=30), timedelta(minutes=5))
    web = decide({"service": "web"}, Severity.error, config)
    assert (web.group_wait, web.group_interval) == (timedelta(0), timedelta(minutes=5))
    bare = decide({}, Severity.error, RoutingConfig.model_validate({"route": {"team": "ops"}}))
    assert (bare.group_wait, bare.group_interval) == (timedelta(0), None), "by default: at once, no updates"
    with pytest.raises(ValueError, match="group_wait"):
        RoutingConfig.model_validate({"route": {"team": "ops", "group_wait": "soon"}})
