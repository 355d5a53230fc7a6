"""sla entry point: ``python -m services.sla.main`` — the one place that wires the sla service."""

from __future__ import annotations

import asyncio

import faust
from prometheus_client import CollectorRegistry

from services.sla.agents import SlaDeps, register
from services.sla.policy import SlaConfig
from shared.app import create_faust_app
from shared.config import load_yaml_model
from shared.logging import configure_logging
from shared.metrics import serve_metrics
from shared.settings import SlaSettings
from shared.topics import Topics, ensure_topics


def build(settings: SlaSettings, registry: CollectorRegistry) -> faust.App:
    config = load_yaml_model(settings.config_dir / "sla.yaml", SlaConfig)
    app = create_faust_app("sla", settings)
    register(
        app, SlaDeps(Topics(settings.topic_prefix, settings.partitions), config, registry, settings.tick_interval_s)
    )
    return app


def main() -> None:
    settings = SlaSettings()
    configure_logging("sla", settings.log_level)
    topics = Topics(settings.topic_prefix, settings.partitions)
    asyncio.run(ensure_topics(settings.kafka_bootstrap_servers, topics.all()))
    registry = CollectorRegistry()
    app = build(settings, registry)
    serve_metrics(registry, settings.metrics_host, settings.metrics_port)
    worker = faust.Worker(app, loglevel=settings.log_level, redirect_stdouts=False, override_logging=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
