"""notifier entry point: ``python -m services.notifier.main`` — the one place that wires channels."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import cast

import uvloop
from prometheus_client import CollectorRegistry

from services.notifier.channels import registry
from services.notifier.channels.base import Channel, ChannelContext, Http
from services.notifier.channels.email import EmailChannel
from services.notifier.config import NotifyConfig
from services.notifier.pipeline import LinkIssuer, SolvedLinker, SurveyLinker
from services.notifier.refs import MessageRefs, StoredRefs
from services.notifier.service import Notifier, NotifierDeps
from services.notifier.stages import BreakerPolicy, RetryPolicy
from shared.infra import actionlinks
from shared.infra.config import ConfigWatcher, load_yaml_model
from shared.infra.settings import NotifierSettings
from shared.rules.muting import MutingConfig
from shared.rules.oncall import TeamsConfig
from shared.store import db
from shared.store.journal import Journal, journal_for
from shared.store.runner import SqlRunner
from shared.streaming.driver import DriverConfig
from shared.streaming.runtime import run_service
from shared.streaming.stream_metrics import StreamMetrics
from shared.streaming.topics import Topics


def build_channels(
    settings: NotifierSettings, config: NotifyConfig, http: Http, refs: MessageRefs
) -> dict[str, Channel]:
    context = ChannelContext(http, time.time, refs)
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


def survey_linker(settings: NotifierSettings) -> SurveyLinker | None:
    """Signed satisfaction survey links for reporters, when TICKETLOOP_ACTION_LINK_KEYS is set (else no survey)."""
    if settings.action_link_keys is None or not settings.action_link_keys.get_secret_value().strip():
        return None
    keys = actionlinks.keys_from_setting(settings.action_link_keys.get_secret_value())

    def link(ticket_id: str, reporter: str, closes: datetime, score: int) -> str:
        token = actionlinks.issue(keys, ticket_id, "survey", reporter, closes)
        return actionlinks.survey_url(settings.public_url, token, score)

    return link


SOLVED_FOR = timedelta(days=14)
"""How long the reporter may say whether a suggested workaround solved it."""


def solved_linker(settings: NotifierSettings) -> SolvedLinker | None:
    """Signed "this solved it / it did not" links, when TICKETLOOP_ACTION_LINK_KEYS is set (else none)."""
    if settings.action_link_keys is None or not settings.action_link_keys.get_secret_value().strip():
        return None
    keys = actionlinks.keys_from_setting(settings.action_link_keys.get_secret_value())

    def link(ticket_id: str, reporter: str, solved: bool) -> str:
        token = actionlinks.issue(keys, ticket_id, "solved", reporter, datetime.now(UTC) + SOLVED_FOR)
        return actionlinks.solved_url(settings.public_url, token, solved)

    return link


def driver_config(settings: NotifierSettings, topics: Topics) -> DriverConfig:
    """The notifier's consumer: the group faust's app used before (its committed offsets carry over)."""
    return DriverConfig(
        bootstrap=settings.kafka_bootstrap_servers,
        group_id=f"{settings.topic_prefix}notifier",
        topics=(topics.tickets.name, topics.escalations.name, topics.handovers.name),
        session_timeout_s=settings.session_timeout_s,
        heartbeat_interval_s=settings.heartbeat_interval_s,
        group_instance_id=settings.group_instance_id,
        gather_bytes=settings.fetch_gather_bytes,
        gather_ms=settings.fetch_gather_ms,
    )


def retry_policy(settings: NotifierSettings) -> RetryPolicy:
    """When a failed send is tried again, and when it is given up."""
    return RetryPolicy(settings.retry_base_s, settings.retry_max_s, settings.give_up_s)


def breaker_policy(settings: NotifierSettings) -> BreakerPolicy:
    """When a target's circuit opens, and how often it is probed while open."""
    return BreakerPolicy(settings.breaker_failures, settings.breaker_open_s, settings.breaker_max_open_s)


def build(settings: NotifierSettings, registry: CollectorRegistry) -> Notifier:
    config = load_yaml_model(settings.config_dir / "notify.yaml", NotifyConfig)
    engine = db.make_engine(settings.database_url.get_secret_value())
    db.init_db(engine)
    topics = Topics(settings.topic_prefix, settings.partitions)
    http = Http(settings.http_timeout_s)
    sql = SqlRunner(engine)
    return Notifier(
        NotifierDeps(
            topics=topics,
            config=config,
            channels=build_channels(settings, config, http, StoredRefs(sql)),
            sql=sql,
            http=http,
            engine=engine,
            registry=registry,
            retry=retry_policy(settings),
            breaker=breaker_policy(settings),
            public_url=settings.public_url,
            links=link_issuer(settings),
            surveys=survey_linker(settings),
            solved=solved_linker(settings),
            muting=ConfigWatcher(settings.config_dir / "routing.yaml", MutingConfig),
            teams=ConfigWatcher(settings.config_dir / "teams.yaml", TeamsConfig, optional=True),
            stream=StreamMetrics(registry, "notifier"),
            journal=Journal(settings.journal_dir) if settings.journal_dir is not None else journal_for(engine),
        ),
        driver_config(settings, topics),
        settings.kafka_bootstrap_servers,
    )


def main() -> None:
    # uvloop: a paced stream wakes the loop for every answer, fetch and write; its C loop and transports cost less
    run_service("notifier", NotifierSettings(), build, loop_factory=uvloop.new_event_loop)


if __name__ == "__main__":
    main()
