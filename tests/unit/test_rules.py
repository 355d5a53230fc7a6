from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.router.rules import Matcher, Op, RoutingConfig, decide, describe, event_labels, parse_matcher
from shared.events import EventKind, Severity
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
