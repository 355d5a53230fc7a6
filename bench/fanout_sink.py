"""A fast receiving HTTP server for bench.notify_fanout, in a process of its own (aiohttp on uvloop, one loop).

    python -m bench.fanout_sink --port PORT

Every POST (any path) is answered 200 at once and recorded as (ticket id from the JSON body, path, receive time
as ``time.time()``); nothing is verified (no signature check: the server must not be what is measured).
``GET /_count`` answers how many were recorded, ``GET /_received?since=N`` the records from the N-th on as JSON.
``FanoutSink`` starts and stops it from the benchmark (``SinkProcess``: any such receiving server run as
``python -m <module> --port PORT``, answering ``GET /_count``). Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

import httpx
import orjson
import uvloop
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
Received = tuple[str, str, float]
"""(ticket id, path, receive time in seconds since the epoch)."""


def ticket_id_of(body: bytes) -> str:
    """The ``ticket_id`` of a webhook body (the notifier's message data), or "" when it has none."""
    try:
        found = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    return str(found.get("ticket_id", "")) if isinstance(found, dict) else ""


def recording_app(entry: Callable[[str, bytes, float], Any], client_max_size: int) -> web.Application:
    """A receiver that answers every POST 200 and keeps ``entry(path, body, arrival time)`` of each, served back
    by ``/_count`` and ``/_received?since=N`` (the benches' sinks)."""
    records: list[Any] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        records.append(entry(request.path, body, time.time()))
        return web.Response(status=200)

    async def count(_request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps({"count": len(records)}), content_type="application/json")

    async def received(request: web.Request) -> web.Response:
        since = int(request.query.get("since", "0"))
        return web.Response(body=orjson.dumps(records[since:]), content_type="application/json")

    app = web.Application(client_max_size=client_max_size)
    app.router.add_get("/_count", count)
    app.router.add_get("/_received", received)
    app.router.add_post("/{tail:.*}", hook)
    return app


def make_app() -> web.Application:
    return recording_app(lambda path, body, at: (ticket_id_of(body), path, at), 2 * 1024 * 1024)


def serve(port: int) -> None:
    # uvloop: a receiver that costs less leaves the benchmark's machine to what it measures
    web.run_app(make_app(), host="127.0.0.1", port=port, access_log=None, print=None, loop=uvloop.new_event_loop())


class SinkProcess:
    """A receiving server as a child process: ``start()`` waits (bounded) until it answers; ``stop()`` ends it."""

    module: ClassVar[str]
    """What ``python -m`` runs; it takes ``--port`` and answers ``GET /_count``."""

    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log = port, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Self:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", self.module, "--port", str(self.port)],
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.module} exited with {self.proc.returncode}; see {self.log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/_count", timeout=2).status_code == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"{self.module} not answering after {timeout:.0f} s; see {self.log}")

    async def count(self, client: httpx.AsyncClient) -> int:
        return int((await client.get(f"{self.url}/_count")).json()["count"])

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


class FanoutSink(SinkProcess):
    """This module's server: what it received as (ticket id, path, receive time)."""

    module = "bench.fanout_sink"

    async def received(self, client: httpx.AsyncClient, since: int = 0) -> list[Received]:
        return [
            (str(t), str(p), float(at)) for t, p, at in (await client.get(f"{self.url}/_received?since={since}")).json()
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    serve(parser.parse_args().port)


if __name__ == "__main__":
    main()
