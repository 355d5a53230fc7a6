"""Metric helpers: each metric is made on an injected registry and named ``ticketloop_<area>_<what>_<unit>``."""

from __future__ import annotations

import contextlib
import re
import socket
import sys
import threading
from collections.abc import Sequence
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

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


METRICS_READ_TIMEOUT_S = 30.0
"""How long a scrape's connection may take to send its whole request, from when it was taken (prometheus_client's
own ``start_http_server`` waits for ever: a client that connected and sent nothing, or half a request, held a thread
each for good; a per-read timeout alone still let one that sends a byte now and then hold it)."""
METRICS_MAX_CONNECTIONS = 32
"""Connections served at once (a thread each); one more is closed as soon as it is accepted. Prometheus scrapes
each target over one connection at a time."""


class _ScrapeHandler(WSGIRequestHandler):
    """A scrape: no log line for it; its connection is cut once it has taken ``timeout`` seconds without sending a
    whole request (each read also times out after that long)."""

    timeout = METRICS_READ_TIMEOUT_S

    def setup(self) -> None:
        super().setup()
        self._deadline = threading.Timer(self.timeout, self._cut)
        self._deadline.daemon = True
        self._deadline.start()

    def _cut(self) -> None:
        """The request took too long to come: the socket is shut, so the read under way ends (the client sees EOF)."""
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def parse_request(self) -> bool:
        read = super().parse_request()  # the request line and headers are in: no deadline for the answer
        self._deadline.cancel()
        return read

    def finish(self) -> None:
        self._deadline.cancel()
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002, ARG002 - the base class's signature
        return None


class _MetricsServer(ThreadingWSGIServer):
    """prometheus_client's threading WSGI server (a daemon thread a connection, at most ``max_connections`` at
    once), quiet about a client that timed out or went away (nothing to tell anyone: the connection is closed)."""

    max_connections = METRICS_MAX_CONNECTIONS

    def server_activate(self) -> None:
        self.slots = threading.BoundedSemaphore(self.max_connections)
        super().server_activate()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):  # a slot is held until the connection is done
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (TimeoutError, ConnectionError)):
            return
        super().handle_error(request, client_address)


def serve_metrics(
    registry: CollectorRegistry,
    host: str,
    port: int,
    read_timeout_s: float = METRICS_READ_TIMEOUT_S,
    max_connections: int = METRICS_MAX_CONNECTIONS,
) -> _MetricsServer | None:
    """Expose the registry on http://host:port/metrics (a daemon thread); port 0 disables it (None). A connection
    that has not sent its whole request ``read_timeout_s`` after it was taken is closed, and at most
    ``max_connections`` are served at once (one more is closed at once)."""
    if not port:
        return None
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    server_class = type(
        "MetricsServer", (_MetricsServer,), {"address_family": family, "max_connections": max_connections}
    )
    handler = type("ScrapeHandler", (_ScrapeHandler,), {"timeout": read_timeout_s})
    httpd: _MetricsServer = make_server(host, port, make_wsgi_app(registry), server_class, handler_class=handler)
    threading.Thread(target=httpd.serve_forever, name="metrics", daemon=True).start()
    return httpd
