"""What reporters say about the workarounds they were sent: the words the timeline records, read back, and the
tally per known issue (the knowledge base's statistics: how often an issue answers a report, how often that
answer helped). Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

_SOLVED, _NOT_SOLVED = " solved it", " did not solve it"


def said_text(known_issue: str, solved: bool) -> str:
    """The timeline's words for a reporter's answer (``said_solved`` reads them back)."""
    return f"the reporter says the workaround of known issue {known_issue}" + (_SOLVED if solved else _NOT_SOLVED)


def said_solved(reason: str) -> bool | None:
    """What a ``workaround_answered`` entry says: solved (True), not (False), or neither (None)."""
    if reason.endswith(_NOT_SOLVED):
        return False
    if reason.endswith(_SOLVED):
        return True
    return None


@dataclass(frozen=True, slots=True)
class IssueTally:
    project: str
    known_issue: str
    answered: int
    """reports the known issue answered with its workaround"""
    said_solved: int
    said_not_solved: int


def tally(answered: Iterable[tuple[str, str, str]], said: Iterable[tuple[str, str]]) -> list[IssueTally]:
    """Per (project, known issue): the reports it answered (``answered``: ticket id, project, known issue) and what
    their reporters said last (``said``: ticket id, entry reason, oldest first)."""
    last: dict[str, bool] = {}
    for ticket_id, reason in said:
        verdict = said_solved(reason)
        if verdict is not None:
            last[ticket_id] = verdict
    counts: dict[tuple[str, str], list[int]] = {}
    for ticket_id, project, issue in answered:
        cell = counts.setdefault((project, issue), [0, 0, 0])
        cell[0] += 1
        if ticket_id in last:
            cell[1 if last[ticket_id] else 2] += 1
    return [IssueTally(p, k, *cell) for (p, k), cell in sorted(counts.items())]
