"""What a due clock fires — the warning, breach or escalation level with its reason in words — and the clock
advanced past it. Escalation ids are stable per ticket and level, so a timer that fires again after a crash repeats
the same escalation, which the notifier drops. Pure."""

from __future__ import annotations

from datetime import datetime

from services.sla.clocks import Clock, Target
from services.sla.policy import NEXT, OWNER, TargetKind
from shared.events import Escalation

_MISSED = {
    "resolve": "resolve target missed: not resolved by {deadline}",
    "first_response": "first response target missed: no response to the reporter by {deadline}",
    "update": "update interval missed: the customer had no update by {deadline}",
}


def _notice(
    clock: Clock,
    now: datetime,
    suffix: str,
    reason: str,
    target: tuple[TargetKind, Target] | None = None,
    **fields: object,
) -> Escalation:
    """A warning, breach or escalation of this clock start (of ``target``'s start, for one of the targets);
    ``suffix`` makes its id (and so its dedup) stable."""
    which, started = (
        ("acknowledge", clock.started_version) if target is None else (target[0], target[1].started_version)
    )
    return Escalation.model_validate(
        {
            "escalation_id": f"{clock.ticket_id}:{which}:{started}:{suffix}",
            "ticket_id": clock.ticket_id,
            "clock": which,
            "target_team": clock.ticket.team,
            "deadline": clock.deadline if target is None else target[1].deadline,
            "fired_at": now,
            "reason": reason,
            "ticket": clock.ticket,
            "trace_id": f"sla-{clock.ticket_id}-{suffix.replace(':', '-')}",
            **fields,
        }
    )


def fire_due(clock: Clock, now: datetime) -> tuple[Escalation | None, Clock]:
    """The warning, breach or escalation that is due at ``now`` (earliest first), and the clock past it."""
    due = clock.next_due
    if due is None or due > now:
        return None, clock
    policy = f"{clock.policy} v{clock.policy_version}"
    acknowledge_due, target_dues = clock._acknowledge_due(), clock._target_dues()
    if target_dues:
        kind, target_due = min(target_dues.items(), key=lambda item: item[1])
        if target_due <= now and (acknowledge_due is None or target_due < acknowledge_due):
            return _fire_target(clock, kind, now, policy)
    if acknowledge_due is None or acknowledge_due > now:
        return None, clock
    return _fire_acknowledge(clock, now, policy)


def _fire_acknowledge(clock: Clock, now: datetime, policy: str) -> tuple[Escalation | None, Clock]:
    """The acknowledge clock's due warning, breach or escalation level, and the clock past it."""
    t = clock.ticket
    deadline = clock.deadline.isoformat()
    warning_due, level_due = clock._warning_due(), clock._level_due()
    # a warning only before the deadline: a late tick (a restart) goes straight to the breach
    if (
        warning_due is not None
        and warning_due <= now < clock.deadline
        and (level_due is None or warning_due <= level_due)
    ):
        n = clock.warned + 1
        share = clock.warn_at[clock.warned].share
        reason = f"{share:.0%} of the acknowledge target used; the deadline is {deadline} (policy {policy})"
        warning = _notice(clock, now, f"warning:{n}", reason, kind="warning", level=n)
        return warning, clock.model_copy(update={"warned": n})
    if not clock.breached and clock.deadline <= now and (level_due is None or clock.deadline <= level_due):
        reason = f"acknowledge target missed: not acknowledged by {deadline} (policy {policy})"
        breach = _notice(clock, now, "breach", reason, kind="breach", level=1)
        # warnings not yet sent when the deadline passed are moot
        return breach, clock.model_copy(update={"breached": True, "warned": len(clock.warn_at)})
    if level_due is None:
        return None, clock
    level = clock.fired + 1
    snap = clock.levels[clock.fired]
    team = {OWNER: t.team, NEXT: t.next_level or t.team}.get(snap.team, snap.team)
    reason = f"not acknowledged by {deadline} (policy {policy}, level {level})"
    escalation = _notice(clock, now, str(level), reason, level=level, target_team=team, to_lead=snap.lead)
    update: dict[str, object] = {"fired": level, "warned": len(clock.warn_at)}
    update["state"] = "running" if level < len(clock.levels) else "exhausted"
    return escalation, clock.model_copy(update=update)


def _fire_target(clock: Clock, kind: TargetKind, now: datetime, policy: str) -> tuple[Escalation, Clock]:
    """A target's due warning (only before its deadline) or its breach, and the clock past it."""
    target = clock.targets[kind]
    deadline = target.deadline.isoformat()
    label = kind.replace("_", " ")
    warning_due = target.warning_due()
    if warning_due is not None and warning_due <= now < target.deadline:
        n = target.warned + 1
        share = target.warn_at[target.warned].share
        reason = f"{share:.0%} of the {label} target used; the deadline is {deadline} (policy {policy})"
        notice = _notice(clock, now, f"warning:{n}", reason, (kind, target), kind="warning", level=n)
        after = target.model_copy(update={"warned": n})
    else:
        reason = f"{_MISSED[kind].format(deadline=deadline)} (policy {policy})"
        notice = _notice(clock, now, "breach", reason, (kind, target), kind="breach", level=1)
        after = target.model_copy(update={"breached": True, "warned": len(target.warn_at)})
    return notice, clock.model_copy(update={"targets": {**clock.targets, kind: after}})
