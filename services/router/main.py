"""router entry point: ``python -m services.router.main`` — the one place that wires the router."""

from __future__ import annotations

import faust
from prometheus_client import CollectorRegistry

from services.router.agents import RouterDeps, register
from services.router.projects import ProjectsConfig
from services.router.rules import RoutingConfig
from shared import db
from shared.app import create_faust_app, run_worker
from shared.config import ConfigWatcher
from shared.settings import RouterSettings
from shared.topics import Topics


def build(settings: RouterSettings, registry: CollectorRegistry) -> faust.App:
    routing = ConfigWatcher(settings.config_dir / "routing.yaml", RoutingConfig)
    projects = ConfigWatcher(settings.config_dir / "projects.yaml", ProjectsConfig)
    engine = db.make_engine(settings.database_url)
    db.init_db(engine)
    app = create_faust_app("router", settings)
    register(app, RouterDeps(Topics(settings.topic_prefix, settings.partitions), routing, projects, engine, registry))
    return app


def main() -> None:
    run_worker("router", RouterSettings(), build)


if __name__ == "__main__":
    main()
