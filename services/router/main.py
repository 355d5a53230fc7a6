"""router entry point: ``python -m services.router.main`` — the one place that wires the router."""

from __future__ import annotations

import asyncio

import faust
from prometheus_client import CollectorRegistry

from services.router.agents import RouterDeps, register
from services.router.rules import RoutingConfig
from shared import db
from shared.app import create_faust_app
from shared.config import load_yaml_model
from shared.logging import configure_logging
from shared.metrics import serve_metrics
from shared.settings import RouterSettings
from shared.topics import Topics, ensure_topics


def build(settings: RouterSettings, registry: CollectorRegistry) -> faust.App:
    routing = load_yaml_model(settings.config_dir / "routing.yaml", RoutingConfig)
    engine = db.make_engine(settings.database_url)
    db.init_db(engine)
    app = create_faust_app("router", settings)
    register(app, RouterDeps(Topics(settings.topic_prefix, settings.partitions), routing, engine, registry))
    return app


def main() -> None:
    settings = RouterSettings()
    configure_logging("router", settings.log_level)
    topics = Topics(settings.topic_prefix, settings.partitions)
    asyncio.run(ensure_topics(settings.kafka_bootstrap_servers, topics.all()))
    registry = CollectorRegistry()
    app = build(settings, registry)
    serve_metrics(registry, settings.metrics_host, settings.metrics_port)
    worker = faust.Worker(app, loglevel=settings.log_level, redirect_stdouts=False, override_logging=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
