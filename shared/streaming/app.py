"""The faust app factory: one place that turns settings into a faust App (no global app anywhere)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import faust
from prometheus_client import CollectorRegistry

from shared.infra.logging import configure_logging
from shared.infra.metrics import serve_metrics
from shared.infra.settings import CommonSettings
from shared.streaming import eos
from shared.streaming.topics import Topics, ensure_topics

S = TypeVar("S", bound=CommonSettings)


def kafka_url(bootstrap: str) -> str:
    return ";".join(f"kafka://{h.strip()}" for h in bootstrap.split(",") if h.strip())


def create_faust_app(service: str, settings: CommonSettings, **overrides: Any) -> faust.App:
    """A faust App for one ticketloop service.

    Chosen here, once: short group timing (restarts rejoin in seconds, not a minute), in-memory tables
    recovered from their changelog topics, exactly-once processing by default (Kafka transactions per source
    partition, shared/streaming/eos.py; consumers read committed records only), idempotent handlers anyway, acks=all,
    tables and changelogs with the registry's partition count, static group membership when the worker is named
    (TICKETLOOP_GROUP_INSTANCE_ID), faust's web server off (metrics are served by prometheus_client), and no
    standby replicas (a standby's table copy must never fire timers).
    """
    options: dict[str, Any] = {
        "broker": kafka_url(settings.kafka_bootstrap_servers),
        "store": "memory://",
        "topic_partitions": settings.partitions,
        "topic_replication_factor": 1,
        "processing_guarantee": settings.processing_guarantee,
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": settings.heartbeat_interval_s,
        "broker_rebalance_timeout": settings.session_timeout_s,
        # at_least_once: sends made while handling an event are attached to its offset: faust publishes them
        # and waits for the broker's acknowledgement before it commits that offset (no round trip per send).
        # The commit interval bounds the latency this adds per hop (under exactly_once: the transaction's).
        "stream_publish_on_commit": True,
        "broker_commit_interval": 0.2,
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "table_standby_replicas": 0,
        "web_enabled": False,
        # faust's one-second wait at start only when a changelog topic is new (shared/streaming/tables.py)
        "TableManager": "shared.streaming.tables:KnownChangelogsTableManager",
        "autodiscover": False,
    }
    if settings.group_instance_id:
        options["consumer_group_instance_id"] = settings.group_instance_id
    options.update(overrides)
    if options["processing_guarantee"] == "exactly_once":
        # faust's own transactions commit a send with its destination partition; ours with the source event's
        options["stream_publish_on_commit"] = False
    # The app id names the consumer group and the changelog topics: it carries the topic prefix, so two
    # deployments (or two test runs) on one cluster never share table state.
    app = faust.App(f"{settings.topic_prefix}{service}", **options)
    if options["processing_guarantee"] == "exactly_once":
        eos.install(app, settings.eos_settle_timeout_s)
    return app


def run_worker(service: str, settings: S, build: Callable[[S, CollectorRegistry], faust.App]) -> None:
    """Run one stream service until SIGTERM/Ctrl-C: JSON logs, topics ensured, metrics served, faust worker."""
    configure_logging(service, settings.log_level)
    asyncio.run(
        ensure_topics(settings.kafka_bootstrap_servers, Topics(settings.topic_prefix, settings.partitions).all())
    )
    registry = CollectorRegistry()
    app = build(settings, registry)
    serve_metrics(registry, settings.metrics_host, settings.metrics_port)
    worker = faust.Worker(app, loglevel=settings.log_level, redirect_stdouts=False, override_logging=False)
    worker.execute_from_commandline()
