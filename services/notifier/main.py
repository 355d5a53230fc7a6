"""notifier entry point: ``python -m services.notifier.main`` — the one place that wires channels."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import cast

import faust
import httpx
from prometheus_client import CollectorRegistry

from services.notifier.agents import NotifierDeps, register
from services.notifier.channels import registry
from services.notifier.channels.base import Channel, ChannelContext
from services.notifier.channels.email import EmailChannel
from services.notifier.config import NotifyConfig
from services.notifier.pipeline import LinkIssuer
from services.notifier.stages import BreakerPolicy, RetryPolicy
from shared import actionlinks, db
from shared.app import create_faust_app, run_worker
from shared.config import ConfigWatcher, load_yaml_model
from shared.muting import MutingConfig
from shared.oncall import TeamsConfig
from shared.settings import NotifierSettings
from shared.topics import Topics


def build_channels(settings: NotifierSettings, config: NotifyConfig) -> dict[str, Channel]:
    context = ChannelContext(httpx.AsyncClient(timeout=settings.http_timeout_s), time.time)
    return {
        **registry.build_channels(config.entries(), context),
        registry.EMAIL: EmailChannel(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.mail_from,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            starttls=settings.smtp_starttls,
            timeout_s=settings.http_timeout_s,
        ),
    }


def link_issuer(settings: NotifierSettings) -> LinkIssuer | None:
    """Signed one-click links for messages, when TICKETLOOP_ACTION_LINK_KEYS is set (else messages carry none)."""
    if settings.action_link_keys is None or not settings.action_link_keys.get_secret_value().strip():
        return None
    keys = actionlinks.keys_from_setting(settings.action_link_keys.get_secret_value())
    ttl = timedelta(seconds=settings.action_link_ttl_s)

    def issue(ticket_id: str, action: str, person: str) -> str:
        token = actionlinks.issue(
            keys, ticket_id, cast(actionlinks.LinkAction, action), person, datetime.now(UTC) + ttl
        )
        return actionlinks.link_url(settings.public_url, token)

    return issue


def build(settings: NotifierSettings, registry: CollectorRegistry) -> faust.App:
    config = load_yaml_model(settings.config_dir / "notify.yaml", NotifyConfig)
    engine = db.make_engine(settings.database_url)
    db.init_db(engine)
    app = create_faust_app("notifier", settings)
    register(
        app,
        NotifierDeps(
            topics=Topics(settings.topic_prefix, settings.partitions),
            config=config,
            channels=build_channels(settings, config),
            engine=engine,
            registry=registry,
            retry=RetryPolicy(settings.retry_base_s, settings.retry_max_s, settings.give_up_s),
            breaker=BreakerPolicy(settings.breaker_failures, settings.breaker_open_s, settings.breaker_max_open_s),
            public_url=settings.public_url,
            links=link_issuer(settings),
            muting=ConfigWatcher(settings.config_dir / "routing.yaml", MutingConfig),
            teams=ConfigWatcher(settings.config_dir / "teams.yaml", TeamsConfig, optional=True),
        ),
    )
    return app


def main() -> None:
    run_worker("notifier", NotifierSettings(), build)


if __name__ == "__main__":
    main()
