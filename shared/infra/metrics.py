"""Metric helpers: each metric is made on an injected registry and named ``ticketloop_<area>_<what>_<unit>``."""

from __future__ import annotations

import re
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_NAME = re.compile(r"^ticketloop_[a-z]+_[a-z0-9_]+_(total|seconds|bytes|count|ratio|info)$")


def check_name(name: str) -> str:
    """``name`` if it follows the naming rule (used by custom collectors too), else ValueError."""
    if not _NAME.match(name):
        raise ValueError(f"metric name {name!r} does not follow ticketloop_<area>_<what>_<unit>")
    return name


def counter(registry: CollectorRegistry, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
    # prometheus_client appends _total itself; the check is on the exposed name.
    check_name(name)
    return Counter(name.removesuffix("_total"), doc, list(labels), registry=registry)


def histogram(
    registry: CollectorRegistry,
    name: str,
    doc: str,
    labels: Sequence[str] = (),
    buckets: Sequence[float] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
) -> Histogram:
    return Histogram(check_name(name), doc, list(labels), registry=registry, buckets=list(buckets))


def gauge(registry: CollectorRegistry, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
    return Gauge(check_name(name), doc, list(labels), registry=registry)


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> None:
    """Expose the registry on http://host:port/metrics (a daemon thread); port 0 disables it."""
    if port:
        start_http_server(port, addr=host, registry=registry)
