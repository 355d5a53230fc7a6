"""From notices to deliveries: who gets what (pure ``plan``), then send with dedup and retries (``deliver``).

Every dispatch has a stable notification id — the notice's id, the channel and the target — so a notice
handled twice (after a restart, or a re-fired timer) is sent once: the delivery log is checked first.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from services.notifier.channels.base import Channel, DeliveryError, Message
from services.notifier.config import NotifyConfig
from services.notifier.templates import render_assignment, render_escalation, render_resolution
from shared.events import Change, Delivery, Escalation, TicketEvent
from shared.ids import stable_id


@dataclass(frozen=True, slots=True)
class Dispatch:
    notification_id: str
    ticket_id: str
    channel: str
    target: str
    message: Message


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    base_s: float = 0.5
    max_s: float = 30.0

    def delay(self, attempt: int, jitter: float = 1.0) -> float:
        """Exponential backoff with full jitter; ``attempt`` counts from 1."""
        return float(min(self.max_s, self.base_s * 2.0 ** (attempt - 1)) * jitter)


def notice_for_ticket_event(event: TicketEvent, public_url: str) -> tuple[str, str, Message] | None:
    """(notice id, team, message) for the ticket events people are told about; None for the rest."""
    if event.change is Change.opened:
        return event.change_id, event.ticket.team, render_assignment(event, public_url)
    if event.change is Change.resolved:
        return event.change_id, event.ticket.team, render_resolution(event, public_url)
    return None


def notice_for_escalation(escalation: Escalation, public_url: str) -> tuple[str, str, Message]:
    return escalation.escalation_id, escalation.target_team, render_escalation(escalation, public_url)


def plan(notice_id: str, ticket_id: str, team: str, message: Message, config: NotifyConfig) -> list[Dispatch]:
    channels = config.teams.get(team)
    if (channels is None or not (channels.email or channels.webhooks)) and config.fallback_team:
        channels = config.teams[config.fallback_team]
    if channels is None:
        return []
    targets = [("email", str(addr)) for addr in channels.email] + [("webhook", w.name) for w in channels.webhooks]
    return [
        Dispatch(stable_id(notice_id, channel, target), ticket_id, channel, target, message)
        for channel, target in targets
    ]


async def deliver(
    dispatch: Dispatch,
    channels: Mapping[str, Channel],
    retry: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    jitter: Callable[[], float] = random.random,
) -> Delivery:
    """Send one dispatch with retries; returns the delivery record (sent, or failed with the last error)."""
    channel = channels[dispatch.channel]
    error = ""
    attempt = 0
    for attempt in range(1, retry.attempts + 1):
        try:
            await channel.send(dispatch.message, dispatch.target)
        except DeliveryError as exc:
            error = str(exc)
            if not exc.retryable or attempt == retry.attempts:
                break
            await sleep(retry.delay(attempt, 0.5 + jitter() / 2))
            continue
        return _record(dispatch, "sent", attempt, "")
    return _record(dispatch, "failed", attempt, error)


def _record(dispatch: Dispatch, status: str, attempts: int, error: str) -> Delivery:
    return Delivery(
        notification_id=dispatch.notification_id,
        ticket_id=dispatch.ticket_id,
        kind=dispatch.message.kind,
        channel=dispatch.channel,
        recipient=dispatch.target,
        status="sent" if status == "sent" else "failed",
        attempts=attempts,
        error=error,
        at=datetime.now(UTC),
    )
