"""Which known issue a customer report is, by rule and by meaning. Pure functions over an index built once per
load of projects.yaml (``build_known_issue_index``), never per event.

The order, for the known issues of the report's project (``rank_known_issues``):

1. an issue whose label ``matchers`` fail is never suggested;
2. an issue one of whose ``keywords`` is in the report (case-insensitive), or that has no keywords and matches by
   its labels alone, comes first, in the order of projects.yaml (as before there was a matcher by meaning);
3. then every other issue by its similarity to the report (``shared/rules/similarity.py``: lexical BM25 over
   English words and jieba's Chinese words and characters, and WordLlama's embedding, combined), best first,
   against the issue's title and ``description`` and keywords.

The report is answered (its workaround put on the timeline and, where configured, mailed as a suggestion) by the
first of that list when it matched by a rule, or when its similarity is at least ``ANSWER_THRESHOLD``
(``answer``). The threshold and the weights were chosen on tests/data/known_issue_reports.jsonl:
``python -m bench.known_issue_match`` prints what they give there.

``similar_tickets`` ranks resolved tickets against a new one with the same machinery.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from services.router.projects import KnownIssue, Project, ProjectsConfig
from services.router.rules import event_labels
from shared.events import EventKind, InboundEvent
from shared.rules.matchers import parse_matcher
from shared.rules.similarity import LEXICAL_WEIGHT, TextIndex, TextModels, build_index, similarities

ANSWER_THRESHOLD = 0.27
"""The least combined similarity at which a report is answered with a known issue it matched by meaning alone."""
SIMILAR_TICKETS = 3
SIMILAR_TICKET_THRESHOLD = 0.3
"""The least similarity at which a resolved ticket is offered as a similar past ticket."""

How = Literal["keyword", "labels", "lexical", "semantic"]


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A known issue that may answer a report, how it matched and how well (1.0 for a rule)."""

    issue: KnownIssue
    how: How
    score: float
    lexical: float = 0.0
    semantic: float | None = None
    keyword: str | None = None

    @property
    def by_rule(self) -> bool:
        return self.how in ("keyword", "labels")

    def explain(self) -> str:
        """How it matched, for the timeline: ``matched keyword "checkout"`` or ``suggested by similarity 0.41,
        mostly semantic (lexical 0.29, semantic 0.69; no keyword matched)``."""
        if self.how == "keyword":
            return f'matched keyword "{self.keyword}"'
        if self.how == "labels":
            return "matched its labels"
        parts = f"lexical {self.lexical:.2f}" + (f", semantic {self.semantic:.2f}" if self.semantic is not None else "")
        return f"suggested by similarity {self.score:.2f}, mostly {self.how} ({parts}; no keyword matched)"


@dataclass(frozen=True)
class KnownIssueIndex:
    """Each project's known issues indexed for similarity, and the models they were indexed with."""

    models: TextModels
    projects: Mapping[str, TextIndex]
    source: ProjectsConfig
    """The configuration it was built from (a reload builds a new index)."""


@dataclass(frozen=True, slots=True)
class Answer:
    project: Project
    suggestion: Suggestion

    @property
    def issue(self) -> KnownIssue:
        return self.suggestion.issue


def issue_text(issue: KnownIssue) -> str:
    """What an issue is compared by: its title, description and keywords."""
    return " ".join([issue.title, issue.description, " ".join(issue.keywords)])


def build_known_issue_index(projects: ProjectsConfig, models: TextModels) -> KnownIssueIndex:
    indexes = {
        p.name: build_index([(k.id, issue_text(k)) for k in p.known_issues], models)
        for p in projects.projects
        if p.known_issues
    }
    return KnownIssueIndex(models, indexes, projects)


def labels_match(issue: KnownIssue, labels: Mapping[str, str]) -> bool:
    return all(parse_matcher(m).matches(dict(labels)) for m in issue.matchers)


def keyword_in(issue: KnownIssue, text: str) -> str | None:
    """The first of the issue's keywords found in the text (case-insensitive), if any."""
    lowered = text.lower()
    return next((k for k in issue.keywords if k.lower() in lowered), None)


def rank_known_issues(
    issues: Sequence[KnownIssue], labels: Mapping[str, str], text: str, index: KnownIssueIndex | None, project: str
) -> list[Suggestion]:
    """The issues that may answer a report, in the order of the module doc: the label gate, rules first, then
    by similarity (every gated issue with a similarity above 0; none without an index)."""
    gated = [k for k in issues if labels_match(k, labels)]
    ruled: list[Suggestion] = []
    rest: dict[str, KnownIssue] = {}
    for issue in gated:
        if not issue.keywords:
            ruled.append(Suggestion(issue, "labels", 1.0))
        elif (word := keyword_in(issue, text)) is not None:
            ruled.append(Suggestion(issue, "keyword", 1.0, keyword=word))
        else:
            rest[issue.id] = issue
    if index is None or project not in index.projects:
        return ruled
    by_meaning = [
        Suggestion(rest[s.key], _how(s.lexical, s.semantic), s.score, s.lexical, s.semantic)
        for s in similarities(index.projects[project], text, index.models)
        if s.key in rest and s.score > 0
    ]
    return ruled + by_meaning


def _how(lexical: float, semantic: float | None) -> How:
    """Which of the two signals carried the similarity (the larger share of the combined score)."""
    if semantic is None or LEXICAL_WEIGHT * lexical >= (1 - LEXICAL_WEIGHT) * semantic:
        return "lexical"
    return "semantic"


def answer(ranked: Sequence[Suggestion], threshold: float = ANSWER_THRESHOLD) -> Suggestion | None:
    """The suggestion a report is answered with: the first, when it matched by a rule or is similar enough."""
    if not ranked:
        return None
    first = ranked[0]
    return first if first.by_rule or first.score >= threshold else None


def report_text(event: InboundEvent) -> str:
    """What a report says: its summary and its annotations (the details, a mail's text)."""
    return " ".join([event.summary, *event.annotations.values()])


def known_issue_for(
    event: InboundEvent, projects: ProjectsConfig, index: KnownIssueIndex | None = None
) -> Answer | None:
    """The known issue of the event's project that customer feedback is answered with (alerts never are); by
    keywords and labels only when there is no index."""
    if event.kind is not EventKind.feedback:
        return None
    labels = event_labels(event)
    project = projects.project_for(labels)
    if project is None:
        return None
    usable = index if index is not None and index.source is projects else None
    found = answer(rank_known_issues(project.known_issues, labels, report_text(event), usable, project.name))
    return Answer(project, found) if found is not None else None


# -- similar past tickets ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolvedTicket:
    """A resolved ticket as the similar-tickets list shows it."""

    ticket_id: str
    summary: str
    resolved_at: datetime
    resolution: str = ""
    """How it was resolved (the resolve reason, or the known issue it was answered with)."""
    customer: str | None = None
    """Whose ticket it was: it is offered only on that customer's new tickets (``may_show``)."""


@dataclass(frozen=True, slots=True)
class SimilarTicket:
    ticket: ResolvedTicket
    score: float
    lexical: float
    semantic: float | None


def index_resolved(tickets: Sequence[ResolvedTicket], models: TextModels) -> TextIndex:
    """Resolved tickets indexed by their summary and how they were resolved (built once per refresh)."""
    return build_index([(t.ticket_id, f"{t.summary} {t.resolution}") for t in tickets], models)


def may_show(past: ResolvedTicket, customer: str | None) -> bool:
    """Whether a resolved ticket may be named on a new ticket of ``customer``: only when it was the same
    customer's (no customer: only tickets of no customer). The list goes into the assignment message, and a
    project's chat channel is often shared with its customer: another customer's summary and resolution must
    never reach it."""
    return past.customer == customer


def similar_tickets(
    text: str,
    tickets: Sequence[ResolvedTicket],
    index: TextIndex,
    models: TextModels,
    *,
    customer: str | None = None,
    limit: int = SIMILAR_TICKETS,
    threshold: float = SIMILAR_TICKET_THRESHOLD,
    exclude: str | None = None,
    by_id: Mapping[str, ResolvedTicket] | None = None,
) -> list[SimilarTicket]:
    """The resolved tickets of ``customer`` (``may_show``) most like a new report, best first (at most ``limit``,
    each at least ``threshold``; ``exclude``: the new ticket's own id, when it is in the index); ties go to the
    most recently resolved. ``by_id``: ``tickets`` by id, when the caller keeps it (built once per refresh, not per
    report)."""
    by_id = by_id if by_id is not None else {t.ticket_id: t for t in tickets}
    found = [
        SimilarTicket(by_id[s.key], s.score, s.lexical, s.semantic)
        for s in similarities(index, text, models)
        if s.key in by_id and s.key != exclude and s.score >= threshold and may_show(by_id[s.key], customer)
    ]
    found.sort(key=lambda f: (-round(f.score, 6), -f.ticket.resolved_at.timestamp()))
    return found[:limit]


@dataclass(frozen=True, slots=True)
class PastTickets:
    """The resolved tickets a new one is compared with, and their index (refreshed from the read model)."""

    tickets: list[ResolvedTicket]
    index: TextIndex
    models: TextModels
    by_id: dict[str, ResolvedTicket]


def past_tickets(rows: Sequence[tuple[str, str, datetime, str, str | None]], models: TextModels) -> PastTickets:
    tickets = [ResolvedTicket(tid, summary, at, how, customer) for tid, summary, at, how, customer in rows]
    return PastTickets(tickets, index_resolved(tickets, models), models, {t.ticket_id: t for t in tickets})


def similar_lines(event: InboundEvent, ticket_id: str, customer: str | None, past: PastTickets) -> list[str]:
    """The most similar resolved tickets of the same customer to a new customer report, one line each: id,
    summary, when, how and by whom, score (alerts are not compared: a storm of new alerts must not pay for it per
    ticket)."""
    if event.kind is not EventKind.feedback:
        return []
    found = similar_tickets(
        report_text(event),
        past.tickets,
        past.index,
        past.models,
        customer=customer,
        exclude=ticket_id,
        by_id=past.by_id,
    )
    return [
        f"{f.ticket.ticket_id} ({f.ticket.summary}), resolved {f.ticket.resolved_at:%Y-%m-%d} {f.ticket.resolution}"
        f" [similarity {f.score:.2f}]"
        for f in found
    ]
