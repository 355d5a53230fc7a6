"""intake entry point: ``python -m services.intake.main`` — the one place that wires intake."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn
from aiosmtpd.smtp import SMTP
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.applications import Starlette

from services.intake.api import create_app
from services.intake.config import IntakeConfig
from services.intake.edge import IntakeDeps
from services.intake.limits import SharedArrivals, shared_keys
from services.intake.mail_in import MailHandler
from services.intake.publisher import KafkaPublisher
from services.intake.read_timeout import read_timeout_protocol
from services.intake.workers import (
    Supervisor,
    WorkerRole,
    WorkerServer,
    available_cpus,
    die_with_parent,
    worker_count,
    worker_role,
)
from services.router.projects import ProjectsConfig
from shared.infra.actionlinks import keys_from_setting
from shared.infra.config import ConfigWatcher, load_yaml_model
from shared.infra.logging import configure_logging, get_logger
from shared.infra.settings import IntakeSettings
from shared.rules.oncall import TeamsConfig
from shared.store import db
from shared.streaming.runtime import settle_heap
from shared.streaming.topics import Topics, ensure_topics

ENSURE_RETRY_S = 5.0
"""While the topics could not be made at start, intake tries again this often (and is not ready meanwhile)."""


def build(settings: IntakeSettings, role: WorkerRole | None = None) -> tuple[Starlette, KafkaPublisher]:
    """The app and its publisher; ``role``: this process is one of a supervisor's workers (services/intake/workers.py),
    which share rate limits and metrics and of which only worker 0 receives mail."""
    config = load_yaml_model(settings.config_dir / "intake.yaml", IntakeConfig)
    engine = db.make_engine(settings.database_url.get_secret_value())
    db.init_db(engine)
    topics = Topics(settings.topic_prefix, settings.partitions)
    publisher = KafkaPublisher(
        settings.kafka_bootstrap_servers,
        timeout_s=settings.publish_timeout_s,
        required=(topics.events.name, topics.commands.name),
    )
    keys = settings.action_link_keys.get_secret_value() if settings.action_link_keys else ""
    slack_secret = settings.slack_signing_secret
    http = httpx.AsyncClient(timeout=5.0)  # Slack response_url redraws
    shared_arrivals, scrape = None, None
    if role is not None:
        limited = shared_keys((i.name for i in config.integrations), (f.name for f in config.forms))
        shared_arrivals = SharedArrivals(role.shared, limited)
        scrape = CollectorRegistry()
        MultiProcessCollector(scrape, str(role.metrics))  # type: ignore[no-untyped-call]
    app = create_app(
        IntakeDeps(
            config=config,
            publisher=publisher,
            engine=engine,
            topics=topics,
            registry=CollectorRegistry(),
            max_body_bytes=settings.max_body_bytes,
            teams=ConfigWatcher(settings.config_dir / "teams.yaml", TeamsConfig, optional=True),
            projects=ConfigWatcher(settings.config_dir / "projects.yaml", ProjectsConfig, optional=True),
            link_keys=keys_from_setting(keys) if keys.strip() else None,  # blank: not configured
            slack_signing_secret=slack_secret if slack_secret and slack_secret.get_secret_value() else None,
            http=http,
            shared_arrivals=shared_arrivals,
            scrape=scrape,
            worker=role.index if role is not None else 0,
        )
    )

    async def ensured(log: Any) -> bool:
        try:
            await asyncio.wait_for(ensure_topics(settings.kafka_bootstrap_servers, topics.all(), attempts=3), 15)
        except Exception as exc:  # noqa: BLE001 - topics are created by whichever service reaches Kafka first
            log.warning("topics_not_ensured", error=repr(exc))
            return False
        return True

    async def ensure_until_done(log: Any) -> None:
        while True:
            await asyncio.sleep(ENSURE_RETRY_S)
            if await ensured(log):
                return

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        log = get_logger("intake")
        ensuring: asyncio.Task[None] | None = None
        reachable = await ensured(log)
        if not reachable:
            ensuring = asyncio.create_task(ensure_until_done(log))  # /readyz stays 503 until the topics exist
        await publisher.start()
        if reachable:  # serve once the producer is connected: a worker started again answered its first posts 503
            await publisher.connected(CONNECT_WAIT_S)
        smtp = None
        if settings.smtp_port and config.mail is not None and (role is None or role.runs_smtp):
            handler = MailHandler(config.mail, app.state.deliver_mail)
            smtp = await asyncio.get_running_loop().create_server(
                lambda: SMTP(
                    handler,
                    data_size_limit=config.mail.max_bytes if config.mail else None,
                    hostname="ticketloop-intake",  # else a DNS lookup per connection, on the loop
                ),
                settings.host,
                settings.smtp_port,
            )
            log.info("intake_mail_listening", smtp=f"{settings.host}:{settings.smtp_port}")
        settle_heap()
        log.info("intake_listening", url=f"http://{settings.host}:{settings.port}")
        yield
        if smtp is not None:
            smtp.close()
        if ensuring is not None:
            ensuring.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ensuring
        await publisher.stop()
        await http.aclose()
        if shared_arrivals is not None:
            shared_arrivals.close()

    app.router.lifespan_context = lifespan
    return app, publisher


CONNECT_WAIT_S = 10.0
"""How long a starting intake waits for its producer to connect to a broker that answered, before it serves
anyway (its posts are then 503s until the producer is connected)."""


def main() -> None:
    settings = IntakeSettings()
    configure_logging("intake", settings.log_level)
    role = worker_role(os.environ)
    if role is None:
        count = worker_count(settings.workers, available_cpus())
        if count > 1:
            # a config error stops intake here, with its file and line, not in a worker restarted again and again
            load_yaml_model(settings.config_dir / "intake.yaml", IntakeConfig)
            raise SystemExit(Supervisor(settings.host, settings.port, count).run())
    else:
        die_with_parent(role)
    app, _ = build(settings, role)
    http = read_timeout_protocol(settings.read_timeout_s)  # httptools, with a timer on reading each request
    if role is not None:  # the supervisor's socket, shared by every worker
        config = uvicorn.Config(app, log_config=None, access_log=False, loop="uvloop", http=http)
        WorkerServer(config, role).run()
        return
    # uvloop and httptools, not asyncio and h11: 3,400-3,650 single-alert posts a second against 2,040-2,590
    # (bench/intake_vs_alertmanager --alerts 5000 --singles 20000, interleaved runs)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http=http,
    )


if __name__ == "__main__":
    main()
