"""The leanest intake Python serves a single post with: the bound under intake's single-post rate (issue 15).

    python -m bench.lean_intake --port PORT --bootstrap HOST:PORT --topic TOPIC [--at-once]

One process on uvloop. httptools parses each request; its body is produced as one record with ``acks=all``
(aiokafka, idempotent, no linger, as intake's publisher produces), and 202 is written once the broker acknowledged
it. No routing, no token, no reading of the body, no metrics, no logs: what is left of a post is the HTTP round
trip and the broker's. It prints ``ready`` once it listens. bench/intake_vs_alertmanager posts it the same single
alerts from the same client as Alertmanager and intake, in the same run, so its ``lean_single_ratio`` is how near
Alertmanager's single-post rate any intake that answers after the broker's acknowledgement could come on this
machine. With ``--at-once`` it answers 202 as soon as a request is read and produces nothing: the HTTP round trip
alone. Not a server for anything else: one request in flight a connection, as the bench's client sends them.
"""

from __future__ import annotations

import argparse
import asyncio

import uvloop
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from bench.recording_server import BareHttp

ACCEPTED = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"


class LeanProtocol(BareHttp):
    """One connection: each complete request's body produced, then answered."""

    def __init__(self, producer: AIOKafkaProducer | None, topic: str, tasks: set[asyncio.Task[None]]) -> None:
        super().__init__()
        self.producer, self.topic, self.tasks = producer, topic, tasks
        self.body: list[bytes] = []

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body, self.body = b"".join(self.body), []
        if self.producer is None:
            if self.transport is not None:
                self.transport.write(ACCEPTED)
            return
        task = asyncio.get_running_loop().create_task(self.answer(body))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def answer(self, body: bytes) -> None:
        assert self.producer is not None
        try:
            await (await self.producer.send(self.topic, value=body))
            answer = ACCEPTED
        except KafkaError:
            answer = UNAVAILABLE
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(answer)


async def serve(port: int, bootstrap: str, topic: str, at_once: bool) -> None:
    producer = None
    if not at_once:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0)
        await producer.start()
    tasks: set[asyncio.Task[None]] = set()
    try:
        server = await asyncio.get_running_loop().create_server(
            lambda: LeanProtocol(producer, topic, tasks), "127.0.0.1", port
        )
        async with server:
            print("ready", flush=True)
            await server.serve_forever()
    finally:
        if producer is not None:
            await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--at-once", action="store_true", help="answer before producing anything (and produce none)")
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.bootstrap, args.topic, args.at_once))


if __name__ == "__main__":
    main()
