"""shared/streaming/app.py's choices as the Kafka consumer faust builds from them (no broker: the consumer is built, not
started)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared.infra.settings import CommonSettings
from shared.streaming.app import create_faust_app
from shared.streaming.eos import FETCH_MAX_WAIT_MS
from shared.streaming.tables import KnownChangelogsTableManager


def worker_consumer(service: str) -> Any:
    """The aiokafka consumer faust's consumer thread would start for ``service``."""

    async def build() -> Any:
        app = create_faust_app(service, CommonSettings())
        consumer: Any = app.consumer
        return consumer._thread._create_worker_consumer(app.transport)

    return asyncio.run(build())


def test_a_named_worker_is_a_static_group_member(monkeypatch: pytest.MonkeyPatch) -> None:
    """A restart under the same name takes its partitions back without waiting out the dead session."""
    monkeypatch.setenv("TICKETLOOP_GROUP_INSTANCE_ID", "sla-0")
    consumer = worker_consumer("sla")
    assert consumer._group_instance_id == "sla-0"
    assert consumer._group_id == "ticketloop.sla"


def test_an_unnamed_worker_is_a_dynamic_member(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TICKETLOOP_GROUP_INSTANCE_ID", raising=False)
    assert worker_consumer("sla")._group_instance_id is None


def test_the_stream_consumer_polls_briefly_so_offset_lookups_do_not_queue_behind_it() -> None:
    """faust builds it with a 1.5 s long poll; recovery's offset lookups wait behind that on one connection."""
    assert worker_consumer("router")._fetch_max_wait_ms == FETCH_MAX_WAIT_MS < 1500


def test_the_table_manager_waits_at_start_only_for_new_changelog_topics() -> None:
    """faust's TableManager sleeps 1 s at start on every restart; ours only while a changelog topic is new."""

    async def manager() -> Any:
        return create_faust_app("sla", CommonSettings()).tables

    assert isinstance(asyncio.run(manager()), KnownChangelogsTableManager)


def test_the_database_url_is_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """A PostgreSQL URL carries its password: the settings never show it (a repr, a log of the settings)."""
    url = "postgresql://ticketloop:pg-s3cret-pw@db.internal:5432/ticketloop"
    monkeypatch.setenv("DATABASE_URL", url)
    settings = CommonSettings()
    assert "pg-s3cret-pw" not in repr(settings) and "pg-s3cret-pw" not in str(settings.model_dump())
    assert settings.database_url.get_secret_value() == url
