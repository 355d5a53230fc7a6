"""The quarterly joint review's figures, from the read model's rows (pure).

Both teams review a quarter together: how each SLA clock held per priority, how fast tickets were acknowledged and
resolved week by week, what came in (by category, and in hypercare or operations), what keeps coming back, every
breach with its reason, who handed what to whom, which reports the handover package's known issues answered and
which not, the customers' satisfaction with their comments, and the SOP candidates: recurring problems no known issue
covers yet. Every figure here is computed from plain rows (``TicketFacts``, ``Entry``, ``Answer``), so the same
numbers come out of SQLite and PostgreSQL (services/review/load.py reads them).
"""

from __future__ import annotations

import re
import statistics
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from services.sla.policy import SlaConfig
from shared.rules.satisfaction import Figures, figures_of
from shared.rules.workarounds import tally

CLOCKS = ("acknowledge", "resolve", "first_response", "update")
PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
_QUARTER = re.compile(r"^([0-9]{4})Q([1-4])$")


class QuarterError(ValueError):
    """A quarter that is not written ``YYYYQn``."""


def quarter_name(text: str) -> str:
    """A quarter as the report names it: ``2026Q4`` for ``2026q4``, `` 2026Q4 `` or typed full-width.
    QuarterError for anything else, and for a year outside 1970-9000."""
    found = _QUARTER.match(unicodedata.normalize("NFKC", text).strip().upper())
    if found is None:
        raise QuarterError(f"a quarter is written like 2026Q4, not {text[:32]!r}")
    if not 1970 <= int(found.group(1)) <= 9000:
        raise QuarterError(f"a quarter between 1970 and 9000, not {text[:32]!r}")
    return f"{found.group(1)}Q{found.group(2)}"


def quarter_bounds(text: str) -> tuple[datetime, datetime]:
    """``2026Q4`` -> [2026-10-01, 2027-01-01) in UTC."""
    name = quarter_name(text)
    year, q = int(name[:4]), int(name[5])
    start = datetime(year, 3 * (q - 1) + 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC) if q == 4 else datetime(year, 3 * q + 1, 1, tzinfo=UTC)
    return start, end


@dataclass(frozen=True, slots=True)
class TicketFacts:
    """What the review needs of one ticket (a row of the read model's tickets table)."""

    ticket_id: str
    kind: str
    summary: str
    priority: str
    team: str
    policy: str
    opened_at: datetime
    state: str
    occurrences: int = 1
    project: str | None = None
    customer: str | None = None
    phase: str | None = None
    category: str | None = None
    known_issue: str | None = None
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """A timeline entry: a change, escalation, warning or breach (``change_id`` names a breach's clock)."""

    ticket_id: str
    change_id: str
    change: str
    actor: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Answer:
    ticket_id: str
    score: int
    comment: str
    team: str
    answered_at: datetime
    project: str | None = None


@dataclass(frozen=True, slots=True)
class Held:
    """One clock at one priority: how many tickets it applied to and how many it held for."""

    applicable: int
    met: int

    @property
    def share(self) -> float | None:
        return self.met / self.applicable if self.applicable else None


@dataclass(frozen=True, slots=True)
class Week:
    start: datetime
    opened: int
    mtta_min: float | None
    mttr_min: float | None


@dataclass(frozen=True, slots=True)
class Recurring:
    """Tickets whose summaries read alike (numbers aside): a problem that keeps coming back."""

    summary: str
    tickets: int
    occurrences: int
    kinds: tuple[str, ...]
    known_issues: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Breach:
    ticket_id: str
    clock: str
    priority: str
    team: str
    at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class Move:
    ticket_id: str
    at: datetime
    actor: str
    reason: str
    handover: bool


@dataclass(frozen=True, slots=True)
class Review:
    quarter: str
    start: datetime
    end: datetime
    scope: str
    tickets: int
    compliance: dict[str, dict[str, Held]]
    weeks: list[Week]
    by_category: dict[str, int]
    by_phase: dict[str, int]
    recurring: list[Recurring]
    breaches: list[Breach]
    moves: list[Move]
    known_issue_hits: dict[str, int]
    known_issue_said: dict[str, tuple[int, int]]
    """per known issue: how many of its reporters said the workaround solved it, and how many said not"""
    reports: int
    reports_answered: int
    satisfaction: Figures
    satisfaction_by_team: dict[str, Figures]
    comments: list[Answer]
    sop_candidates: list[Recurring]
    notes: list[str] = field(default_factory=list)


def breach_clock(change_id: str) -> str:
    """The clock of a breach entry: its id is ``<ticket>:<clock>:<started version>:breach`` (services/sla/firing.py)."""
    parts = change_id.split(":")
    return parts[1] if len(parts) >= 4 and parts[1] in CLOCKS else "acknowledge"


def clocks_for(ticket: TicketFacts, sla: SlaConfig) -> set[str]:
    """The clocks that ran for a ticket under the policy it names (a policy no longer in sla.yaml: acknowledge)."""
    policy = sla.policies.get(ticket.policy)
    if policy is None:
        return {"acknowledge"}
    clocks = {"acknowledge"} if ticket.priority in policy.acknowledge else set()
    if ticket.priority in policy.resolve:
        clocks.add("resolve")
    if ticket.priority in policy.update:
        clocks.add("update")
    if ticket.kind == "feedback" and ticket.priority in policy.first_response:
        clocks.add("first_response")
    return clocks


def compliance(
    tickets: Sequence[TicketFacts], breaches: Sequence[Breach], sla: SlaConfig
) -> dict[str, dict[str, Held]]:
    """Per clock and priority: tickets it applied to, and those without a breach of it (an open ticket counts as
    held until it breaches). A breach recorded for a clock the policy no longer has still counts."""
    breached: dict[str, set[str]] = defaultdict(set)
    for b in breaches:
        breached[b.clock].add(b.ticket_id)
    counts: dict[str, dict[str, list[int]]] = {c: {} for c in CLOCKS}
    for t in tickets:
        for clock in clocks_for(t, sla) | {c for c in CLOCKS if t.ticket_id in breached[c]}:
            cell = counts[clock].setdefault(t.priority, [0, 0])
            cell[0] += 1
            cell[1] += t.ticket_id not in breached[clock]
    return {
        clock: {p: Held(n, met) for p, (n, met) in sorted(cells.items())} for clock, cells in counts.items() if cells
    }


def _minutes(start: datetime, end: datetime | None) -> float | None:
    return (end - start).total_seconds() / 60 if end is not None and end >= start else None


def weekly(tickets: Sequence[TicketFacts], start: datetime, end: datetime) -> list[Week]:
    """Per week of the period (from its first day): tickets opened, and the median minutes to acknowledge and to
    resolve of those opened that week."""
    weeks: list[Week] = []
    at = start
    while at < end:
        nxt = min(at + timedelta(days=7), end)
        opened = [t for t in tickets if at <= t.opened_at < nxt]
        mtta = [m for t in opened if (m := _minutes(t.opened_at, t.acknowledged_at)) is not None]
        mttr = [m for t in opened if (m := _minutes(t.opened_at, t.resolved_at)) is not None]
        weeks.append(
            Week(
                at,
                len(opened),
                statistics.median(mtta) if mtta else None,
                statistics.median(mttr) if mttr else None,
            )
        )
        at = nxt
    return weeks


_NUMBERS = re.compile(r"\d+")
_SPACES = re.compile(r"\s+")


def problem_key(summary: str) -> str:
    """What makes two summaries the same problem here: case, numbers and spacing aside."""
    return _SPACES.sub(" ", _NUMBERS.sub("#", summary.lower())).strip()


def recurring(tickets: Sequence[TicketFacts], top: int = 10) -> list[Recurring]:
    """The problems with the most tickets (then occurrences), each at least 2 tickets."""
    groups: dict[str, list[TicketFacts]] = defaultdict(list)
    for t in tickets:
        groups[problem_key(t.summary)].append(t)
    found = [
        Recurring(
            summary=members[0].summary,
            tickets=len(members),
            occurrences=sum(t.occurrences for t in members),
            kinds=tuple(sorted({t.kind for t in members})),
            known_issues=tuple(sorted({t.known_issue for t in members if t.known_issue})),
        )
        for members in groups.values()
        if len(members) >= 2
    ]
    found.sort(key=lambda r: (-r.tickets, -r.occurrences, r.summary))
    return found[:top]


def breaches_of(entries: Iterable[Entry], tickets: dict[str, TicketFacts]) -> list[Breach]:
    return sorted(
        (
            Breach(e.ticket_id, breach_clock(e.change_id), t.priority, t.team, e.at, e.reason)
            for e in entries
            if e.change == "breached" and (t := tickets.get(e.ticket_id)) is not None
        ),
        key=lambda b: (b.at, b.ticket_id),
    )


def said_per_issue(reports: Sequence[TicketFacts], entries: Sequence[Entry]) -> dict[str, tuple[int, int]]:
    """Per known issue: (reporters who said its workaround solved it, who said it did not), by their last word."""
    rows = tally(
        ((t.ticket_id, t.project or "", t.known_issue) for t in reports if t.known_issue),
        ((e.ticket_id, e.reason) for e in entries if e.change == "workaround_answered"),
    )
    out: dict[str, tuple[int, int]] = {}
    for r in rows:
        yes, no = out.get(r.known_issue, (0, 0))
        out[r.known_issue] = (yes + r.said_solved, no + r.said_not_solved)
    return out


def opening_phase(ticket: TicketFacts, handed_over: set[str]) -> str:
    """The phase a ticket came in during: a ticket handed over at the end of hypercare came in during hypercare
    (the read model keeps the phase it is in now)."""
    if ticket.ticket_id in handed_over:
        return "hypercare"
    return ticket.phase or "no project"


def moves_of(entries: Iterable[Entry]) -> list[Move]:
    """Ownership moves: reassignments, the hypercare handovers among them."""
    return sorted(
        (
            Move(e.ticket_id, e.at, e.actor, e.reason, e.reason.startswith("handover:"))
            for e in entries
            if e.change == "reassigned"
        ),
        key=lambda m: (m.at, m.ticket_id),
    )


def review(
    quarter: str,
    scope: str,
    tickets: Sequence[TicketFacts],
    entries: Sequence[Entry],
    answers: Sequence[Answer],
    sla: SlaConfig,
) -> Review:
    """The whole review of the tickets opened in the quarter (their timelines) and the answers given in it."""
    start, end = quarter_bounds(quarter)
    by_id = {t.ticket_id: t for t in tickets}
    breaches = breaches_of(entries, by_id)
    reports = [t for t in tickets if t.kind == "feedback"]
    problems = recurring(tickets, top=10)
    sop = [r for r in recurring(reports, top=50) if not r.known_issues][:10]
    teams: dict[str, list[int]] = defaultdict(list)
    for a in answers:
        teams[a.team].append(a.score)
    moves = moves_of(entries)
    handed_over = {m.ticket_id for m in moves if m.handover}
    notes = []
    open_now = sum(t.state in ("open", "acknowledged") for t in tickets)
    if open_now:
        notes.append(f"{open_now} ticket(s) still open: each counts as within its targets until it breaches")
    return Review(
        quarter=quarter.upper(),
        start=start,
        end=end,
        scope=scope,
        tickets=len(tickets),
        compliance=compliance(tickets, breaches, sla),
        weeks=weekly(tickets, start, end),
        by_category=dict(Counter(t.category or ("alert" if t.kind == "alert" else "other") for t in tickets)),
        by_phase=dict(Counter(opening_phase(t, handed_over) for t in tickets)),
        recurring=problems,
        breaches=breaches,
        moves=moves,
        known_issue_hits=dict(Counter(t.known_issue for t in reports if t.known_issue)),
        known_issue_said=said_per_issue(reports, entries),
        reports=len(reports),
        reports_answered=sum(1 for t in reports if t.known_issue),
        satisfaction=figures_of(a.score for a in answers),
        satisfaction_by_team={team: figures_of(scores) for team, scores in sorted(teams.items())},
        comments=[a for a in answers if a.comment],
        sop_candidates=sop,
        notes=notes,
    )
