from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.router.rules import RoutingConfig, Rule, matches, route
from shared.events import EventKind, Severity
from tests.unit.factories import event

label_keys = st.text(alphabet="abcdefgh_", min_size=1, max_size=6)
label_values = st.text(alphabet="abcxyz0123-", max_size=8)
label_sets = st.dictionaries(label_keys, label_values, max_size=6)


def config(*rules: Rule) -> RoutingConfig:
    return RoutingConfig(default_team="ops", rules=list(rules))


def test_first_matching_rule_wins_and_explains_itself() -> None:
    cfg = config(
        Rule(name="db", match={"service": "db"}, team="dba", priority="P1", policy="gold"),
        Rule(name="all", team="everyone"),
    )
    decision = route(event(labels={"service": "db"}), cfg)
    assert (decision.team, decision.priority, decision.policy, decision.rule) == ("dba", "P1", "gold", "db")
    assert "rule 'db'" in decision.explain()
    assert route(event(labels={"service": "web"}), cfg).team == "everyone"


def test_default_route_and_priority_from_severity() -> None:
    cfg = config(Rule(name="web", match={"service": "web"}, team="web"))
    decision = route(event(severity=Severity.error, labels={}), cfg)
    assert (decision.team, decision.priority, decision.rule, decision.policy) == ("ops", "P2", "(default)", "default")
    assert route(event(severity=Severity.info), cfg).priority == "P4"


def test_pseudo_labels_severity_source_kind() -> None:
    cfg = config(
        Rule(name="fb", match={"kind": "feedback", "source": "am"}, match_re={"severity": "crit.*"}, team="impl")
    )
    assert route(event(kind=EventKind.feedback), cfg).team == "impl"
    assert route(event(kind=EventKind.alert), cfg).team == "ops"


def test_regex_matchers_are_anchored() -> None:
    rule = Rule(name="r", match_re={"env": "prod"}, team="t")
    assert matches(rule, {"env": "prod"})
    assert not matches(rule, {"env": "preprod"})
    assert not matches(rule, {})


@given(label_sets)
def test_a_rule_built_from_a_subset_of_the_labels_matches(labels: dict[str, str]) -> None:
    subset = dict(list(labels.items())[: len(labels) // 2])
    assert matches(Rule(name="r", match=subset, team="t"), labels)


@given(label_sets, label_keys, label_values)
def test_an_equality_matcher_fails_when_the_label_differs(labels: dict[str, str], key: str, value: str) -> None:
    labels = {**labels, key: value}
    assert not matches(Rule(name="r", match={key: value + "!"}, team="t"), labels)


@given(label_sets)
def test_empty_rule_matches_everything_and_route_is_total(labels: dict[str, str]) -> None:
    assert matches(Rule(name="r", team="t"), labels)
    assert route(event(labels=labels), config(Rule(name="x", match={"zz": "1"}, team="t"))).team == "ops"


@pytest.mark.parametrize("priority", ["P0", "P6", "high"])
def test_rule_priority_is_validated(priority: str) -> None:
    with pytest.raises(ValueError, match="priority"):
        Rule(name="r", team="t", priority=priority)
