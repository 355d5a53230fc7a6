"""Structured JSON logging (structlog), with event id, ticket id and trace id carried in Kafka headers.

``configure_logging`` routes stdlib logging (faust, aiokafka, uvicorn) through the same JSON renderer, so
every line a service prints is one JSON object.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from contextvars import ContextVar
from typing import Any

import structlog

HEADER_KEYS = ("trace_id", "event_id", "ticket_id")
_IDS: ContextVar[Mapping[str, str] | None] = ContextVar("ticketloop_ids", default=None)
"""The ids of the message being handled (``bind_ids``): one context variable set once per message, where
structlog's ``bind_contextvars`` sets one per id and unbinds the last message's (8% of the router's time in a
storm, three binds an event)."""


def merge_ids(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The structlog processor that puts the bound ids into each line (a line's own fields win)."""
    for key, value in (_IDS.get() or {}).items():
        event_dict.setdefault(key, value)
    return event_dict


REPEAT_WINDOW_S = 10.0
"""A library's log line (the same logger, level and message template) is written once in this long; the next one
after it says how many were left out."""
REPEAT_KEYS_MAX = 1024


def repeat_verdict(seen: dict[tuple[str, int, str], tuple[float, int]], key: tuple[str, int, str], now: float) -> int:
    """Whether a line with ``key`` goes out now: -1 if not (counted in ``seen``), else how many like it were left
    out since the last one that went (``seen`` is updated: the window starts again)."""
    first, left_out = seen.get(key, (float("-inf"), 0))
    if now - first < REPEAT_WINDOW_S:
        seen[key] = (first, left_out + 1)
        return -1
    if key not in seen and len(seen) >= REPEAT_KEYS_MAX:
        seen.clear()
    seen[key] = (now, 0)
    return left_out


class RepeatFilter(logging.Filter):
    """The libraries' lines (aiokafka logs every failed connect, thousands while a broker restarts): each kind
    once a window (``repeat_verdict``), the next saying how many were left out."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.clock = clock
        self.seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        left_out = repeat_verdict(self.seen, (record.name, record.levelno, str(record.msg)), self.clock())
        if left_out < 0:
            return False
        if left_out:
            record.msg = f"{record.msg} ({left_out} more like it left out)"
        return True


def configure_logging(service: str, level: str = "INFO") -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        merge_ids,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, structlog.processors.JSONRenderer()],
        # one write() a line: print() writes the line and its newline apart, and two workers sharing a log file
        # had lines run together
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.JSONRenderer()],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(RepeatFilter())  # a library's line repeated while the broker is away: once a window
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request's URL at INFO, and a chat webhook's URL is its secret
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    _IDS.set(None)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


def new_trace_id() -> str:
    """128 random bits as 32 hex digits (a uuid4's hex without building the UUID: a fifth of its time)."""
    return os.urandom(16).hex()


def make_headers(**ids: str | None) -> list[tuple[str, bytes]]:
    """Kafka headers for the given ids (``trace_id=..., ticket_id=...``); ``None`` values are left out."""
    return [(k, v.encode()) for k, v in ids.items() if v is not None]


def ids_from_headers(headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None) -> dict[str, str]:
    if headers is None:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {k: v.decode(errors="replace") for k, v in items if k in HEADER_KEYS and v is not None}


def bind_ids(**ids: str | None) -> None:
    """Bind the ids of the message being handled to every log line until the next bind."""
    _IDS.set({k: v for k, v in ids.items() if v is not None})
