"""sla entry point: ``python -m services.sla.main`` — the one place that wires the sla service."""

from __future__ import annotations

import faust
from prometheus_client import CollectorRegistry

from services.sla.agents import SlaDeps, register
from services.sla.policy import SlaConfig
from shared.infra.config import load_yaml_model
from shared.infra.settings import SlaSettings
from shared.streaming.app import create_faust_app, run_worker
from shared.streaming.snapshots import SnapshotPolicy
from shared.streaming.topics import Topics


def build(settings: SlaSettings, registry: CollectorRegistry) -> faust.App:
    config = load_yaml_model(settings.config_dir / "sla.yaml", SlaConfig)
    app = create_faust_app("sla", settings)
    topics = Topics(settings.topic_prefix, settings.partitions)
    snapshots = None
    if settings.state_dir is not None:
        snapshots = SnapshotPolicy(
            settings.state_dir / "sla", settings.snapshot_interval_s, settings.snapshot_max_age_s
        )
    deps = SlaDeps(topics, config, registry, settings.tick_interval_s, settings.probe_interval_s, snapshots)
    register(app, deps)
    return app


def main() -> None:
    run_worker("sla", SlaSettings(), build)


if __name__ == "__main__":
    main()
