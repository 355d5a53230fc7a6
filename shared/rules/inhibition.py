"""Inhibition rules, as Alertmanager has them: while a source problem fires, the targets that share its labels
are not notified (a whole site being down says enough; its hosts need not page one by one). Pure.

    inhibit_rules:                      # in routing.yaml
      - name: site-down-mutes-hosts
        source_matchers: ['alertname="SiteDown"']
        target_matchers: ['severity=~"warning|error"']
        equal: [site]

A ticket never inhibits itself, and a label missing on both sides counts as equal (as in Alertmanager).
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from shared.rules.matchers import MatcherList, parse_matcher


class InhibitRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    source_matchers: MatcherList = Field(min_length=1)
    target_matchers: MatcherList = Field(min_length=1)
    equal: list[str] = Field(default_factory=list)

    def is_target(self, labels: dict[str, str]) -> bool:
        return all(parse_matcher(m).matches(labels) for m in self.target_matchers)

    def is_source(self, labels: dict[str, str]) -> bool:
        return all(parse_matcher(m).matches(labels) for m in self.source_matchers)

    def same(self, source: dict[str, str], target: dict[str, str]) -> bool:
        return all(source.get(name, "") == target.get(name, "") for name in self.equal)


def inhibited_by(
    ticket_id: str,
    labels: dict[str, str],
    firing: Iterable[tuple[str, dict[str, str]]],
    rules: Iterable[InhibitRule],
) -> tuple[InhibitRule, str] | None:
    """The rule and the firing source ticket that inhibit this ticket, or None.

    ``firing`` holds (ticket id, labels) of the tickets whose problem is firing now."""
    applicable = [r for r in rules if r.is_target(labels)]
    if not applicable:
        return None
    for source_id, source_labels in firing:
        if source_id == ticket_id:
            continue
        for rule in applicable:
            if rule.is_source(source_labels) and rule.same(source_labels, labels):
                return rule, source_id
    return None
