"""The receiving HTTP server of bench.loop_storm, in a process of its own (bench/recording_server.py): where both
Alertmanager and ticketloop's notifier post their notifications.

    python -m bench.storm_sink --port PORT

Every POST (any path) is answered 200 at once and recorded as (path, key, kind, alerts, receive time as
``time.time()``), read from the body by ``notification_of``; nothing is verified (no signature check: the server
must not be what is measured). ``GET /_count`` answers how many were recorded, ``GET /_received?since=N`` the
records from the N-th on as JSON. ``StormSink`` starts and stops it from the benchmark. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
from typing import Any, NamedTuple

import httpx
import orjson
import uvloop

from bench.fanout_sink import SinkProcess
from bench.recording_server import serve_recording


class Notification(NamedTuple):
    path: str
    key: str
    """An Alertmanager notification's group (``group_key`` of its group labels); a ticketloop one's ticket id."""
    kind: str
    """``alertmanager``, or the ticketloop message's kind (``assignment``, ``update``, ...)."""
    alerts: int
    """The alerts it tells about: all of its group's that Alertmanager lists; for ticketloop the ``alerts`` of an
    update, else 1 (an assignment at opening is about the one alert that opened the ticket)."""
    at: float
    """Receive time, seconds since the epoch."""


def group_key(labels: dict[str, str], names: list[str] | None = None) -> str:
    """``name=value`` of the given labels (all when ``names`` is None), sorted by name, comma-joined."""
    chosen = sorted(labels) if names is None else sorted(names)
    return ",".join(f"{n}={labels.get(n, '')}" for n in chosen)


def notification_of(body: bytes) -> tuple[str, str, int]:
    """(key, kind, alerts) of one notification body; ("", "unknown", 0) for anything else."""
    try:
        found: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "", "unknown", 0
    if not isinstance(found, dict):
        return "", "unknown", 0
    if isinstance(found.get("groupLabels"), dict) and isinstance(found.get("alerts"), list):
        firing = sum(1 for a in found["alerts"] if isinstance(a, dict) and a.get("status") == "firing")
        return group_key({str(k): str(v) for k, v in found["groupLabels"].items()}), "alertmanager", firing
    if "ticket_id" in found:
        alerts = found.get("alerts", 1)
        return str(found["ticket_id"]), str(found.get("kind", "")), alerts if isinstance(alerts, int) else 1
    return "", "unknown", 0


def entry(path: str, body: bytes, at: float) -> tuple[str, str, str, int, float]:
    # a plain tuple: orjson writes no NamedTuple
    return (path, *notification_of(body), at)


class StormSink(SinkProcess):
    module = "bench.storm_sink"

    async def received(self, client: httpx.AsyncClient, since: int = 0) -> list[Notification]:
        rows = (await client.get(f"{self.url}/_received?since={since}")).json()
        return [Notification(str(p), str(k), str(kind), int(n), float(at)) for p, k, kind, n, at in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(serve_recording(parser.parse_args().port, entry, 16 * 1024 * 1024))


if __name__ == "__main__":
    main()
