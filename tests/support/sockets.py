"""Raw sockets against a local server, for what an HTTP client library would not send (half a request, a bad
header): what the server sends back until it closes the connection."""

from __future__ import annotations

import socket


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends on ``sock`` until it closes the connection (bounded by the socket's timeout)."""
    got = b""
    while chunk := sock.recv(4096):
        got += chunk
    return got


def answer_until_closed(port: int, sent: bytes, timeout_s: float) -> bytes:
    """Connect to 127.0.0.1:``port``, send ``sent`` and nothing more: what the server sends until it closes the
    connection (each read bounded by ``timeout_s``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(sent)
        return read_until_closed(sock)
