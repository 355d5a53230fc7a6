"""The one interface every channel implements (like Alertmanager's notify.Notifier)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Message:
    kind: str
    subject: str
    text: str
    data: dict[str, object] = field(default_factory=dict)


class DeliveryError(Exception):
    """A failed delivery; ``retryable`` says whether trying again may help (5xx, timeouts) or not (4xx)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Channel(Protocol):
    name: str

    async def send(self, message: Message, target: str) -> None:
        """Deliver ``message`` to ``target`` (an address, or a configured endpoint's name) or raise DeliveryError."""
