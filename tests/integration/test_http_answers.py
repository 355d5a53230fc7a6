"""The channels' HTTP client against a local server whose answers are far larger than any vendor's: the notifier
reads at most ANSWER_MAX_BYTES of an answer, so a target URL that points at the wrong server (one that streams
without end, or answers with a file) cannot fill its memory within the request's timeout."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from deploy.local.kafka_local import free_port
from services.notifier.channels.base import ANSWER_MAX_BYTES, Http

pytestmark = pytest.mark.integration

CHUNK = 64 * 1024
STREAMED = 64 * 1024 * 1024
"""What the endless answer would send in all (bounded, so that the test stops by itself)."""


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            for _ in range(STREAMED // CHUNK):
                await response.write(b"x" * CHUNK)
        except (ConnectionError, RuntimeError):  # the client went away
            pass
        return response

    async def with_length(_request: web.Request) -> web.Response:
        return web.Response(body=b"y" * (8 * 1024 * 1024), content_type="application/octet-stream")

    async def small(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/endless", endless)
    app.router.add_post("/with-length", with_length)
    app.router.add_post("/small", small)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    "path", ["/endless", "/with-length"], ids=["streamed without end", "a Content-Length over the limit"]
)
async def test_an_answer_over_the_limit_is_read_only_up_to_it(server: str, path: str) -> None:
    http = Http(timeout_s=60.0)
    try:
        answer = await http.post(f"{server}{path}", b"{}", {})
        assert (answer.status_code, len(answer.content)) == (200, ANSWER_MAX_BYTES)
        small = await http.post(f"{server}/small", b"{}", {})  # the pool goes on after the cut connection
        assert (small.status_code, small.content) == (200, b'{"ok": true}')
    finally:
        await http.close()
