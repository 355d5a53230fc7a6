"""Label matchers in Alertmanager's syntax: ``name="value"``, ``name!="value"``, ``name=~"re"``, ``name!~"re"``.

Regular expressions are RE2's (google-re2), as Alertmanager's are Go's: matching takes time linear in the label's
length whatever the pattern. Python's ``re`` backtracks: ``instance=~"(a+)+"`` against a value of 24 a's and a b
took 0.6 s here, doubling with each further character, and silences and routes are matched against every alert
(a responder's silence could stop the notifier). RE2 has no backreferences or lookarounds; such a pattern is
refused where it is written, as Alertmanager refuses it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property, lru_cache
from typing import Annotated, Protocol, cast

import re2
from pydantic import AfterValidator

LABEL_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_MATCHER = re.compile(rf'^\s*({LABEL_NAME})\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|([^"\s=~!][^\s"]*)|)\s*$')
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


class Regex(Protocol):
    def fullmatch(self, text: str) -> object | None: ...


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is our ValueError, not a line on stderr


def compile_regex(pattern: str) -> Regex:
    """``pattern`` compiled by RE2; ValueError saying what RE2 cannot read in it (``invalid escape sequence:
    \\1``)."""
    try:
        return cast(Regex, re2.compile(pattern, _RE2_OPTIONS))
    except re2.error as exc:
        why = exc.args[0] if exc.args else exc
        raise ValueError(why.decode(errors="replace") if isinstance(why, bytes) else str(why)) from None


SEEN_MAX = 1024
"""Label values a regex matcher remembers the answer for (the same few values come with every alert of a storm);
longer values than ``SEEN_CHARS`` are matched every time."""
SEEN_CHARS = 256


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
    def _regex(self) -> Regex:
        return compile_regex(self.value)

    @cached_property
    def _seen(self) -> dict[str, bool]:
        return {}

    def matches(self, labels: dict[str, str]) -> bool:
        """Alertmanager semantics: a missing label is the empty string; regexes are fully anchored."""
        actual = labels.get(self.name, "")
        if self.op is Op.eq:
            return actual == self.value
        if self.op is Op.ne:
            return actual != self.value
        seen = self._seen
        found = seen.get(actual)
        if found is None:
            found = self._regex.fullmatch(actual) is not None
            if len(actual) <= SEEN_CHARS:
                if len(seen) >= SEEN_MAX:
                    seen.clear()
                seen[actual] = found
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
            compile_regex(value)
        except ValueError as exc:
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
