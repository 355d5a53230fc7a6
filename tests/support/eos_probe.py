"""A one-agent faust app for the exactly-once tests, run as its own process:
``python -m tests.support.eos_probe IN_TOPIC OUT_TOPIC WORKDIR`` (settings from the environment as for any service).

For each input record ``n`` it publishes ``first:n``, touches ``WORKDIR/sent-n``, waits until the test creates
``WORKDIR/release-n``, then publishes ``second:n``: a handler the test holds mid-event for as long as it likes."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import faust

from shared.infra.settings import CommonSettings
from shared.streaming.app import create_faust_app


def build(settings: CommonSettings, source_topic: str, out_topic: str, workdir: Path) -> faust.App:
    app = create_faust_app("eos-probe", settings, datadir=str(workdir / "faust-data"))  # not in the checkout
    source = app.topic(source_topic, key_serializer="raw", value_serializer="raw")
    out = app.topic(out_topic, key_serializer="raw", value_serializer="raw")

    @app.agent(source, name="eos-probe")
    async def probe(stream: Any) -> AsyncIterator[None]:
        async for event in stream.events():
            n = event.value.decode()
            await out.send(key=event.key, value=f"first:{n}".encode())
            (workdir / f"sent-{n}").touch()
            while not (workdir / f"release-{n}").exists():  # noqa: ASYNC110 - another process creates it
                await asyncio.sleep(0.02)
            await out.send(key=event.key, value=f"second:{n}".encode())
            yield None

    return app


def main() -> None:
    source_topic, out_topic, workdir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    app = build(CommonSettings(), source_topic, out_topic, workdir)
    worker = faust.Worker(app, loglevel="WARNING", redirect_stdouts=False, override_logging=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
