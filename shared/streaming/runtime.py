"""Running a service that is not a faust app (the notifier): topics ensured, metrics served, stopped on SIGTERM.

The service is any object with ``async run(stop)``; it returns once ``stop`` is set (SIGTERM or Ctrl-C) and it
has let go of what it holds. ``every`` is its timer: a periodic coroutine whose faults are logged, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from prometheus_client import CollectorRegistry

from shared.infra.logging import configure_logging, get_logger
from shared.infra.metrics import serve_metrics
from shared.infra.settings import CommonSettings
from shared.streaming.topics import Topics, ensure_topics

log = get_logger(__name__)
S = TypeVar("S", bound=CommonSettings)


class Service(Protocol):
    async def run(self, stop: asyncio.Event) -> None: ...


async def every(interval_s: float, fn: Callable[[], Awaitable[None]], stop: asyncio.Event, name: str) -> None:
    """Call ``fn`` every ``interval_s`` until ``stop`` is set; a fault is logged and the next round comes."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        if stop.is_set():
            return
        try:
            await fn()
        except Exception as exc:  # noqa: BLE001 - a timer outlives any one fault
            log.error("timer_fault", timer=name, error=type(exc).__name__)  # noqa: TRY400 - the text may carry a URL


async def serve(service: str, settings: S, build: Callable[[S, CollectorRegistry], Service]) -> None:
    await ensure_topics(settings.kafka_bootstrap_servers, Topics(settings.topic_prefix, settings.partitions).all())
    registry = CollectorRegistry()
    svc = build(settings, registry)
    settle_heap()
    serve_metrics(registry, settings.metrics_host, settings.metrics_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("service_started", service=service)
    await svc.run(stop)
    log.info("service_stopped", service=service)


def tune_interpreter() -> None:
    """A worker thread waiting for the GIL (an SQL call of the notifier's) gets it within 0.5 ms instead of 5 ms
    while the event loop is busy: each SQL call gives the GIL up and takes it back several times, and a lane waits
    for the write of its outcome before it sends again (bench/notify_fanout, one profiled pair of runs on an
    overloaded paced phase: p50 3.4 s at 5 ms, 1.2 s at 0.5 ms). A higher garbage-collector threshold was tried
    too: no difference beyond this machine's noise."""
    sys.setswitchinterval(0.0005)


def settle_heap() -> int:
    """Once a service is built: what start-up made (modules, SQLAlchemy's and pydantic's machinery, the config) is
    collected once and moved out of the collector's reach (``gc.freeze``), so a full collection later walks only
    what the running service holds. In the notifier a full collection paused the loop 85-818 ms on this machine
    and 10-50 ms after this (bench/notify_fanout, the collector's own callbacks timing each pass), and every
    message in flight waited that long. Returns how many objects were set aside."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def run_service(
    service: str,
    settings: S,
    build: Callable[[S, CollectorRegistry], Service],
    *,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> None:
    """Run one service until SIGTERM/Ctrl-C, with JSON logs; ``loop_factory``: an event loop other than asyncio's
    own (uvloop)."""
    configure_logging(service, settings.log_level)
    tune_interpreter()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(service, settings, build))
