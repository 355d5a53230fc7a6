"""router entry point: ``python -m services.router.main`` — the one place that wires the router."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.router.packages import ProjectsWatcher
from services.router.rules import RoutingConfig
from services.router.service import Router, RouterDeps, Watches
from shared.infra.config import ConfigWatcher
from shared.infra.settings import RouterSettings
from shared.rules.oncall import TeamsConfig
from shared.rules.similarity import load_text_models
from shared.store import db
from shared.streaming.driver import DriverConfig
from shared.streaming.runtime import run_service
from shared.streaming.stream_metrics import StreamMetrics
from shared.streaming.topics import Topics
from shared.streaming.transactional import TxConfig


def tx_config(settings: RouterSettings, topics: Topics) -> TxConfig:
    """The router's exactly-once consumer: the group faust's app used before (its committed offsets and its
    tables' changelogs carry over)."""
    return TxConfig(
        bootstrap=settings.kafka_bootstrap_servers,
        group_id=f"{settings.topic_prefix}router",
        topics=(
            topics.events.name,
            topics.grouped.name,
            topics.key_updates.name,
            topics.ticket_inputs.name,
            topics.commands.name,
        ),
        partitions=topics.partitions,
        service="router",
        deadletter_topic=topics.deadletter.name,
        # an event's later hops first: in a storm the new events queue, not the tickets being opened
        priority_topics=(topics.grouped.name, topics.ticket_inputs.name, topics.key_updates.name, topics.commands.name),
        session_timeout_s=settings.session_timeout_s,
        heartbeat_interval_s=settings.heartbeat_interval_s,
        group_instance_id=settings.group_instance_id,
    )


def projection_config(settings: RouterSettings, topics: Topics) -> DriverConfig:
    """The SQL projection's consumer (at least once; the projection is idempotent)."""
    return DriverConfig(
        bootstrap=settings.kafka_bootstrap_servers,
        group_id=f"{settings.topic_prefix}router-project",
        topics=(topics.tickets.name, topics.escalations.name),
        max_records=2000,
        session_timeout_s=settings.session_timeout_s,
        heartbeat_interval_s=settings.heartbeat_interval_s,
        group_instance_id=f"{settings.group_instance_id}-project" if settings.group_instance_id else None,
    )


def build(settings: RouterSettings, registry: CollectorRegistry) -> Router:
    routing = ConfigWatcher(settings.config_dir / "routing.yaml", RoutingConfig)
    projects = ProjectsWatcher(settings.config_dir)  # projects.yaml and the handover packages in force
    teams = ConfigWatcher(settings.config_dir / "teams.yaml", TeamsConfig, optional=True)
    engine = db.make_engine(settings.database_url.get_secret_value())
    db.init_db(engine)
    topics = Topics(settings.topic_prefix, settings.partitions)
    # jieba's dictionary and WordLlama's embedding, from the installed wheels (no download): once, here
    deps = RouterDeps(
        topics,
        routing,
        projects,
        engine,
        registry,
        teams,
        text_models=load_text_models(),
        stream=StreamMetrics(registry, "router"),
    )
    watches = Watches(risk_every_s=settings.risk_every_s, handover_every_s=settings.handover_every_s)
    return Router(deps, tx_config(settings, topics), projection_config(settings, topics), watches)


def main() -> None:
    run_service("router", RouterSettings(), build)


if __name__ == "__main__":
    main()
