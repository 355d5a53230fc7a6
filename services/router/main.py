"""router entry point: ``python -m services.router.main`` — the one place that wires the router."""

from __future__ import annotations

import faust
from prometheus_client import CollectorRegistry

from services.router.agents import RouterDeps, register
from services.router.projects import ProjectsConfig
from services.router.rules import RoutingConfig
from shared.infra.config import ConfigWatcher
from shared.infra.settings import RouterSettings
from shared.rules.oncall import TeamsConfig
from shared.store import db
from shared.streaming.app import create_faust_app, run_worker
from shared.streaming.topics import Topics


def build(settings: RouterSettings, registry: CollectorRegistry) -> faust.App:
    routing = ConfigWatcher(settings.config_dir / "routing.yaml", RoutingConfig)
    projects = ConfigWatcher(settings.config_dir / "projects.yaml", ProjectsConfig)
    engine = db.make_engine(settings.database_url)
    db.init_db(engine)
    app = create_faust_app("router", settings)
    teams = ConfigWatcher(settings.config_dir / "teams.yaml", TeamsConfig, optional=True)
    topics = Topics(settings.topic_prefix, settings.partitions)
    register(app, RouterDeps(topics, routing, projects, engine, registry, teams))
    return app


def main() -> None:
    run_worker("router", RouterSettings(), build)


if __name__ == "__main__":
    main()
