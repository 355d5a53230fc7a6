"""sla entry point: ``python -m services.sla.main`` — the one place that wires the sla service."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.sla.policy import SlaConfig
from services.sla.service import Sla, SlaDeps
from shared.infra.config import load_yaml_model
from shared.infra.settings import SlaSettings
from shared.streaming.runtime import run_service
from shared.streaming.snapshots import SnapshotPolicy
from shared.streaming.stream_metrics import StreamMetrics
from shared.streaming.topics import Topics
from shared.streaming.transactional import TxConfig


def tx_config(settings: SlaSettings, topics: Topics) -> TxConfig:
    """The sla's exactly-once consumer: the group faust's app used before (its committed offsets and its clocks
    table's changelog carry over); its timer is the driver's punctuation, every ``timer_s``."""
    snapshots = None
    if settings.state_dir is not None:
        snapshots = SnapshotPolicy(
            settings.state_dir / "sla", settings.snapshot_interval_s, settings.snapshot_max_age_s
        )
    timer_s = settings.timer_s
    return TxConfig(
        bootstrap=settings.kafka_bootstrap_servers,
        group_id=f"{settings.topic_prefix}sla",
        topics=(topics.tickets.name, topics.sla_due.name),
        partitions=topics.partitions,
        service="sla",
        deadletter_topic=topics.deadletter.name,
        poll_ms=max(1, int(timer_s * 1000)),
        punctuate_s=timer_s,
        session_timeout_s=settings.session_timeout_s,
        heartbeat_interval_s=settings.heartbeat_interval_s,
        group_instance_id=settings.group_instance_id,
        snapshots=snapshots,
    )


def build(settings: SlaSettings, registry: CollectorRegistry) -> Sla:
    config = load_yaml_model(settings.config_dir / "sla.yaml", SlaConfig)
    topics = Topics(settings.topic_prefix, settings.partitions)
    deps = SlaDeps(topics, config, registry, settings.probe_interval_s, stream=StreamMetrics(registry, "sla"))
    return Sla(deps, tx_config(settings, topics))


def main() -> None:
    run_service("sla", SlaSettings(), build)


if __name__ == "__main__":
    main()
