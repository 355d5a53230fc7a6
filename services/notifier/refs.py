"""Where a channel that changes what it sent (a Slack bot: chat.update) keeps the vendor's id of the last message
it posted per target and ticket: in memory for a channel alone (unit tests, tools), in the database for the
notifier, so a restarted notifier, or the one that takes a ticket's partition over, still redraws that message."""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from shared.store import db
from shared.store.runner import SqlRunner

REMEMBERED = 10_000
"""How many (target, ticket) pairs the memory keeps (oldest forgotten first); in front of the database too."""


class MessageRefs(Protocol):
    async def get(self, target: str, ticket_id: str) -> str | None: ...

    async def put(self, target: str, ticket_id: str, ref: str) -> None: ...

    async def forget(self, target: str, ticket_id: str) -> None: ...


class MemoryRefs:
    """The newest REMEMBERED pairs, in this process only."""

    def __init__(self, size: int = REMEMBERED) -> None:
        self._refs: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._size = size

    def known(self, target: str, ticket_id: str) -> str | None:
        return self._refs.get((target, ticket_id))

    async def get(self, target: str, ticket_id: str) -> str | None:
        return self.known(target, ticket_id)

    async def put(self, target: str, ticket_id: str, ref: str) -> None:
        self._refs[(target, ticket_id)] = ref
        self._refs.move_to_end((target, ticket_id))
        while len(self._refs) > self._size:
            self._refs.popitem(last=False)

    async def forget(self, target: str, ticket_id: str) -> None:
        self._refs.pop((target, ticket_id), None)


class StoredRefs:
    """The ``chat_messages`` table, read at each redraw (another notifier may have posted the ticket's newer
    message while it held the ticket's partition); the newest pairs also in memory, for when the table fails."""

    def __init__(self, sql: SqlRunner) -> None:
        self._sql, self._memory = sql, MemoryRefs()

    async def get(self, target: str, ticket_id: str) -> str | None:
        try:
            return await self._sql(db.chat_message_ref, target, ticket_id)
        except SQLAlchemyError:
            known = self._memory.known(target, ticket_id)
            if known is None:
                raise
            return known

    async def put(self, target: str, ticket_id: str, ref: str) -> None:
        await self._memory.put(target, ticket_id, ref)  # first: this process still redraws if the table fails
        await self._sql(db.put_chat_message, target, ticket_id, ref, datetime.now(UTC))

    async def forget(self, target: str, ticket_id: str) -> None:
        await self._memory.forget(target, ticket_id)
        await self._sql(db.forget_chat_message, target, ticket_id)
