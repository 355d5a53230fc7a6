"""Customer satisfaction: the survey window, the index, and a project's goal. Pure.

When a feedback ticket resolves, its reporter is mailed a one-click survey (1 to 5 and an optional comment) whose
link is good for ``SURVEY_WINDOW`` after the resolution; one answer per ticket, which the reporter may change
within the window (the newest counts). The **satisfaction index** of a set of answers is the share of 4s and 5s
(as CSAT is usually counted). A project may set a goal in projects.yaml:

    satisfaction: {index: 0.9, within: 180d, no_p1: true}

"at least 90% satisfied in the first 180 days after go-live, with no P1 ticket in that time". Until the period
ends the goal is ``on_track`` or ``at_risk``; then ``met`` or ``missed``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.infra.config import Duration

SURVEY_WINDOW = timedelta(days=7)
"""How long after a resolution its survey may be answered (and the answer changed)."""
SATISFIED = 4
"""An answer at or above this counts as satisfied."""
SCORES = (1, 2, 3, 4, 5)


class SatisfactionGoal(BaseModel):
    """``satisfaction:`` on a project in projects.yaml."""

    model_config = ConfigDict(extra="forbid")

    index: float = Field(default=0.9, gt=0, le=1, description="the share of 4s and 5s to reach")
    within: Duration = Field(default=timedelta(days=180), description="the period after go-live it is measured in")
    no_p1: bool = Field(default=True, description="a P1 ticket of the project in the period misses the goal")


def survey_open(resolved_at: datetime | None, answered_at: datetime) -> bool:
    """Whether an answer given at ``answered_at`` is within the survey of a resolution at ``resolved_at``."""
    return resolved_at is not None and answered_at < resolved_at + SURVEY_WINDOW


def survey_refusal(kind: str, resolved_at: datetime | None, answered_at: datetime) -> str | None:
    """Why an answer given at ``answered_at`` is not taken (None: it is): only a customer's resolved report,
    within the window. The time is when the reporter answered (intake's, while the link was valid), not when the
    router gets to it, so a router that lags never loses an answer intake accepted."""
    if kind != "feedback":
        return "only a customer's report (a feedback ticket) has a survey"
    if resolved_at is None:
        return "the ticket has not been resolved"
    if not survey_open(resolved_at, answered_at):
        return f"the survey closed {SURVEY_WINDOW.days} days after the resolution"
    return None


@dataclass(frozen=True, slots=True)
class Figures:
    """The answers of some tickets: how many, how many satisfied (4 or 5), and the index (None: no answers)."""

    answers: int
    satisfied: int

    @property
    def index(self) -> float | None:
        return self.satisfied / self.answers if self.answers else None


def figures_of(scores: Iterable[int]) -> Figures:
    answers = satisfied = 0
    for score in scores:
        answers += 1
        satisfied += score >= SATISFIED
    return Figures(answers, satisfied)


GoalStatus = Literal["met", "missed", "on_track", "at_risk"]


@dataclass(frozen=True, slots=True)
class GoalVerdict:
    status: GoalStatus
    why: str
    ends: datetime


def goal_period(goal: SatisfactionGoal, go_live: datetime) -> tuple[datetime, datetime]:
    """The period a project's goal is measured in: from go-live for ``within``."""
    return go_live, go_live + goal.within


def judge_goal(goal: SatisfactionGoal, go_live: datetime, now: datetime, figures: Figures, p1s: int) -> GoalVerdict:
    """Whether a project meets its goal, given the answers and its P1 tickets in the goal's period; explained."""
    _, ends = goal_period(goal, go_live)
    over = now >= ends
    wanted = f"{goal.index:.0%} satisfied"
    if goal.no_p1 and p1s:
        return GoalVerdict("missed", f"{p1s} P1 ticket(s) in the period (the goal allows none)", ends)
    index = figures.index
    if index is None:
        status: GoalStatus = "missed" if over else "at_risk"
        return GoalVerdict(status, f"no survey answers yet (goal {wanted})", ends)
    have = f"{index:.1%} of {figures.answers} answers satisfied (goal {wanted})"
    if index >= goal.index:
        return GoalVerdict("met" if over else "on_track", have, ends)
    return GoalVerdict("missed" if over else "at_risk", have, ends)


def rating_text(score: int, comment: str) -> str:
    """The timeline's text of a survey answer: ``rated 4/5`` and the comment, if any."""
    return f"rated {score}/5" + (f": {comment}" if comment else "")


def comment_of(reason: str, score: int) -> str:
    """The comment in a ``rated`` change's reason (``rating_text``'s inverse)."""
    return reason.removeprefix(f"rated {score}/5").removeprefix(": ")


__all__ = [
    "SATISFIED",
    "SCORES",
    "SURVEY_WINDOW",
    "Figures",
    "GoalStatus",
    "GoalVerdict",
    "SatisfactionGoal",
    "comment_of",
    "figures_of",
    "goal_period",
    "judge_goal",
    "rating_text",
    "survey_open",
    "survey_refusal",
]
