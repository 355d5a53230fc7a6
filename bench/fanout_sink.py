"""A fast receiving HTTP server for bench.notify_fanout, in a process of its own (bench/recording_server.py).

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
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

import httpx
import orjson
import uvloop

from bench.recording_server import serve_recording

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


def entry(path: str, body: bytes, at: float) -> Received:
    return ticket_id_of(body), path, at


def serve(port: int) -> None:
    uvloop.run(serve_recording(port, entry, 2 * 1024 * 1024))


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
