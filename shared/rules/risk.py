"""The risk warning: a project whose ticket or breach rate rises well above its own baseline gets a warning ticket
for operations before its customers complain. Pure.

The statistic, in words: count the project's tickets opened (or its SLA breaches) in each hour of the last
``baseline`` (7 days), the newest hour last; the **baseline** is the exponentially weighted moving average (EWMA) of
those hourly counts and the **spread** its exponentially weighted standard deviation (both with a half-life of
``half_life``, 24 hours: yesterday counts twice as much as the day before). The last 60 minutes are **at risk**
when they hold at least ``min_count`` and more than baseline + ``k`` * spread (the band; the spread is at least
``min_spread``, so a project that had exactly as many tickets every hour is not warned at its first extra one).
A project whose history is shorter than ``warmup`` (a day) has no baseline yet and is not judged. The warning says
the numbers (``14 tickets in the last hour; baseline 2.1 ± 1.3 an hour over 7 days; band 6.0``);
it resolves by itself when an hour is back inside the band.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events import EventKind, EventStatus, InboundEvent, Severity
from shared.infra.config import Duration

Measure = Literal["tickets", "breaches"]
ALERTNAME = "ProjectRiskRising"
SOURCE = "ticketloop-risk"


class RiskSettings(BaseModel):
    """``risk:`` in projects.yaml (the defaults apply to every project; ``enabled: false`` turns it off)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    baseline: Duration = Field(default=timedelta(days=7), description="the history the baseline is taken over")
    half_life: Duration = Field(default=timedelta(hours=24))
    k: float = Field(default=3.0, gt=0, le=20, description="how many spreads above the baseline is at risk")
    min_count: int = Field(default=5, ge=1, description="fewer in the last hour is never at risk")
    min_spread: float = Field(default=1.0, ge=0)
    warmup: Duration = Field(
        default=timedelta(days=1), description="no warning until the project's history is at least this long"
    )


def hourly(times: Iterable[datetime], now: datetime, hours: int) -> list[int]:
    """How many of ``times`` fall in each of the ``hours`` hours before ``now``, oldest first (the last entry is
    the last 60 minutes)."""
    counts = [0] * hours
    for at in times:
        back = (now - at) / timedelta(hours=1)
        if 0 <= back < hours:
            counts[hours - 1 - int(back)] += 1
    return counts


def ewma(values: Sequence[int], half_life_hours: float) -> tuple[float, float]:
    """The exponentially weighted mean and standard deviation of ``values`` (oldest first)."""
    if not values:
        return 0.0, 0.0
    alpha = 1 - 0.5 ** (1 / half_life_hours)
    mean, var = float(values[0]), 0.0
    for v in values[1:]:
        diff = v - mean
        incr = alpha * diff
        mean += incr
        var = (1 - alpha) * (var + diff * incr)
    return mean, math.sqrt(max(var, 0.0))


@dataclass(frozen=True, slots=True)
class Verdict:
    at_risk: bool
    current: int
    baseline: float
    spread: float
    band: float

    def explain(self, measure: Measure, settings: RiskSettings) -> str:
        days = settings.baseline / timedelta(days=1)
        return (
            f"{self.current} {measure} in the last hour; baseline {self.baseline:.1f} ± {self.spread:.1f} an hour "
            f"(EWMA over {days:g} days); band {self.band:.1f} (baseline + {settings.k:g} * spread)"
        )


def judge(counts: Sequence[int], settings: RiskSettings) -> Verdict:
    """Whether the last hour of ``counts`` (hourly, oldest first) is above its own baseline's band."""
    *history, current = counts or [0]
    hours = settings.half_life / timedelta(hours=1)
    mean, spread = ewma(history, hours) if history else (0.0, 0.0)
    band = mean + settings.k * max(spread, settings.min_spread)
    return Verdict(current >= settings.min_count and current > band, current, mean, spread, band)


def risk_key(project: str, measure: Measure) -> str:
    return f"risk/{project}/{measure}"


def risk_event(project: str, measure: Measure, verdict: Verdict, settings: RiskSettings, now: datetime) -> InboundEvent:
    """The warning's alert (firing while at risk, resolved when back in the band): routed like any alert, to
    operations by the demo's tree. Its id is one per project, measure, state and minute: two routers judging in the
    same minute send the same event, and a rise after a resolution is a new one."""
    status = EventStatus.firing if verdict.at_risk else EventStatus.resolved
    minute = now.replace(second=0, microsecond=0)
    word = "ticket" if measure == "tickets" else "SLA breach"
    return InboundEvent(
        event_id=f"risk:{project}:{measure}:{status.value}:{minute:%Y%m%d%H%M}",
        kind=EventKind.alert,
        source=SOURCE,
        dedup_key=risk_key(project, measure),
        status=status,
        summary=f"Risk: project {project}'s {word} rate is well above its own baseline",
        severity=Severity.warning,
        labels={"alertname": ALERTNAME, "project": project, "risk": measure},
        annotations={"description": verdict.explain(measure, settings)},
        occurred_at=now,
        received_at=now,
        trace_id=f"risk-{project}-{measure}",
    )


def risk_events(
    history: dict[tuple[str, str], list[datetime]],
    warned: set[tuple[str, str]],
    settings: dict[str, RiskSettings],
    now: datetime,
) -> list[InboundEvent]:
    """What to send now: a warning for each (project, measure) at risk, a resolution for each warned one that is
    back inside its band. ``history``: the times of each project's tickets or breaches over its baseline;
    ``warned``: those with a warning ticket open."""
    out = []
    for project, measure in sorted(warned):  # a warning whose project no longer judges it resolves
        gone = project not in settings or not settings[project].enabled
        if gone and measure in ("tickets", "breaches"):
            which: Measure = "tickets" if measure == "tickets" else "breaches"
            calm = Verdict(False, 0, 0.0, 0.0, 0.0)
            out.append(risk_event(project, which, calm, RiskSettings(), now))
    for project, s in settings.items():
        if not s.enabled:
            continue
        hours = max(2, round(s.baseline / timedelta(hours=1)) + 1)
        measures: tuple[Measure, ...] = ("tickets", "breaches")
        # no baseline yet (no ticket older than the warm-up): a new project is not at risk
        young = not any(t <= now - s.warmup for t in history.get((project, "tickets"), []))
        for measure in measures:
            verdict = judge(hourly(history.get((project, measure), []), now, hours), s)
            if verdict.at_risk and young:
                verdict = replace(verdict, at_risk=False)
            if verdict.at_risk or (project, measure) in warned:
                out.append(risk_event(project, measure, verdict, s, now))
    return out
