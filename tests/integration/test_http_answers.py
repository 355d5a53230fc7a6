"""The channels' HTTP client against a local server whose answers are far larger than any vendor's: the notifier
reads at most ANSWER_MAX_BYTES of an answer, so a target URL that points at the wrong server (one that streams
without end, or answers with a file) cannot fill its memory within the request's timeout."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from deploy.local.kafka_local import free_port
from services.notifier.channels.base import ANSWER_MAX_BYTES, CLIENT_THREADS, Http
from shared.infra.threads import named, thread_names

pytestmark = pytest.mark.integration

CHUNK = 64 * 1024
STREAMED = 64 * 1024 * 1024
"""What the endless answer would send in all (bounded, so that the test stops by itself)."""
HITS: list[str] = []
"""Requests that reached the redirect's target."""


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

    async def moved(_request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere")

    async def elsewhere(_request: web.Request) -> web.Response:
        HITS.append("elsewhere")
        return web.json_response({"followed": True})

    app = web.Application()
    app.router.add_post("/endless", endless)
    app.router.add_post("/with-length", with_length)
    app.router.add_post("/small", small)
    app.router.add_post("/moved", moved)
    app.router.add_route("*", "/elsewhere", elsewhere)
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


async def test_a_redirect_is_an_answer_not_followed(server: str) -> None:
    """A webhook URL that answers 302 is a wrong URL: its answer is what the channel reads (a 3xx is no delivery),
    and the body is never sent on to wherever it points."""
    HITS.clear()
    http = Http(timeout_s=10.0)
    try:
        answer = await http.post(f"{server}/moved", b"{}", {})
    finally:
        await http.close()
    assert answer.status_code == 302 and answer.headers.get("location") == "/elsewhere"
    assert HITS == []


async def test_a_proxy_in_the_environment_is_not_taken(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The notifier posts to each vendor directly, as before with aiohttp: a proxy variable meant for something
    else on the host (here one where nothing listens) neither reroutes nor breaks its sends."""
    dead = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    http = Http(timeout_s=10.0)
    try:
        answer = await http.post(f"{server}/small", b"{}", {})
    finally:
        await http.close()
    assert (answer.status_code, answer.content) == (200, b'{"ok": true}')


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="a Linux scheduling policy")
async def test_the_clients_thread_never_preempts_the_loops(server: str) -> None:
    """The client's runtime thread runs as SCHED_BATCH once a client is made (its wake-ups take a free CPU rather
    than the loop's), and the loop's own thread stays as it was; requests go on as before."""
    http = Http(timeout_s=10.0)
    try:
        answer = await http.post(f"{server}/small", b"{}", {})
        clients = named(thread_names(), CLIENT_THREADS)
        policies = {tid: os.sched_getscheduler(tid) for tid in clients}
    finally:
        await http.close()
    assert answer.status_code == 200
    assert clients and set(policies.values()) == {os.SCHED_BATCH}
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
