"""Label matchers in Alertmanager's syntax: ``name="value"``, ``name!="value"``, ``name=~"re"``, ``name!~"re"``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property, lru_cache
from typing import Annotated

from pydantic import AfterValidator

LABEL_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_MATCHER = re.compile(rf'^\s*({LABEL_NAME})\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|([^"\s=~!][^\s"]*)|)\s*$')
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


class Op(StrEnum):
    eq = "="
    ne = "!="
    re = "=~"
    nre = "!~"


@dataclass(frozen=True)
class Matcher:
    name: str
    op: Op
    value: str

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        return re.compile(self.value)

    def matches(self, labels: dict[str, str]) -> bool:
        """Alertmanager semantics: a missing label is the empty string; regexes are fully anchored."""
        actual = labels.get(self.name, "")
        if self.op is Op.eq:
            return actual == self.value
        if self.op is Op.ne:
            return actual != self.value
        found = self._regex.fullmatch(actual) is not None
        return found if self.op is Op.re else not found

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op.value}"{escaped}"'


@lru_cache(maxsize=4096)
def parse_matcher(text: str) -> Matcher:
    """``name="value"``, ``name!="value"``, ``name=~"regex"``, ``name!~"regex"`` (quotes optional).

    Cached: config matchers are evaluated for every event, so each text is parsed (and its regex compiled) once."""
    m = _MATCHER.match(text)
    if m is None:
        raise ValueError(f'not a matcher: {text!r} (use name="value", name!="value", name=~"re" or name!~"re")')
    name, op, quoted, bare = m.groups()
    value = _ESCAPE.sub(r"\1", quoted) if quoted is not None else (bare or "")
    matcher = Matcher(name, Op(op), value)
    if matcher.op in (Op.re, Op.nre):
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression in {text!r}: {exc}") from exc
    return matcher


def check_matchers(value: list[str]) -> list[str]:
    for i, text in enumerate(value):
        try:
            parse_matcher(text)
        except ValueError as exc:
            raise ValueError(f"matchers.{i}: {exc}") from exc
    return value


MatcherList = Annotated[list[str], AfterValidator(check_matchers)]
"""A config field of matcher strings, each checked on load."""


def matcher_labels(labels: Mapping[str, str], severity: str, source: str, kind: str) -> dict[str, str]:
    """The one label view every matcher sees — routes, silences, inhibition, maintenance windows and
    ``ticketloop routes test``: the event's or ticket's labels plus its severity, source and kind (those three
    win over labels of the same name)."""
    return {**labels, "severity": severity, "source": source, "kind": kind}
