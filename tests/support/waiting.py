"""Bounded polling for what a user would see (never a timed assert: the limit only stops a hung test)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

from deploy.local.stack import Stack

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], *, stack: Stack | None = None, timeout: float = 90.0) -> T:
    """The first truthy value ``probe`` returns; fails early if a service of ``stack`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack is not None:
            stack.check_alive()
        value = probe()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"gave up waiting for {what} after {timeout:.0f}s")


async def until(what: str, probe: Callable[[], bool], *, within_s: float = 60.0) -> None:
    """In a coroutine: until ``probe`` holds, yielding to the loop between looks."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not probe():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {within_s:.0f}s")
        await asyncio.sleep(0.05)
