"""Infrastructure settings from the environment (pydantic-settings), one class per service.

Nothing here is read at import time: each service's main.py builds its settings and passes them on.
Common settings use the ``TICKETLOOP_`` prefix (plus the conventional ``KAFKA_BOOTSTRAP_SERVERS`` and
``DATABASE_URL``); each service adds its own prefix, e.g. ``TICKETLOOP_INTAKE_PORT``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _common(name: str) -> AliasChoices:
    """Common settings keep the TICKETLOOP_ prefix even in a service's settings class (whose prefix differs)."""
    return AliasChoices(f"TICKETLOOP_{name.upper()}")


DEFAULT_DATABASE_URL = "sqlite:///ticketloop.db"
"""The read model when no DATABASE_URL is given: a SQLite file in the working directory."""


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TICKETLOOP_", extra="ignore")

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "TICKETLOOP_KAFKA_BOOTSTRAP_SERVERS"),
    )
    database_url: SecretStr = Field(
        default=SecretStr(DEFAULT_DATABASE_URL),
        description="SQLAlchemy URL of the read model; secret: a PostgreSQL URL may carry the password",
        validation_alias=AliasChoices("DATABASE_URL", "TICKETLOOP_DATABASE_URL"),
    )
    topic_prefix: str = Field(default="ticketloop.", validation_alias=_common("topic_prefix"))
    partitions: int = Field(default=4, ge=1, le=1024, validation_alias=_common("partitions"))
    config_dir: Path = Field(default=Path("deploy/local/config"), validation_alias=_common("config_dir"))
    log_level: str = Field(default="INFO", validation_alias=_common("log_level"))
    # Kafka group timing: the defaults (60 s sessions) make every restart wait; a few seconds suits one host.
    session_timeout_s: float = Field(default=10.0, gt=0, validation_alias=_common("session_timeout_s"))
    heartbeat_interval_s: float = Field(default=1.0, gt=0, validation_alias=_common("heartbeat_interval_s"))
    # Kafka static membership: a stable name for this worker (a pod or host name), unique among the workers of one
    # service. A worker restarted under the same name takes its partitions back at once instead of waiting for
    # the dead one's session to expire; the price is that a stopped worker's partitions wait that long too.
    group_instance_id: str | None = Field(
        default=None, min_length=1, max_length=200, validation_alias=_common("group_instance_id")
    )
    metrics_host: str = Field(default="127.0.0.1", validation_alias=_common("metrics_host"))
    # exactly_once (the default): Kafka transactions, one per source partition (shared/streaming/eos.py), commit an
    # event's outputs, table changes and input offset together; readers skip aborted work. at_least_once is faster but
    # a SIGKILL can repeat ticket changes, and in one measured run lost one alert of 3,000 (see the issue notes).
    processing_guarantee: Literal["at_least_once", "exactly_once"] = Field(
        default="exactly_once", validation_alias=_common("processing_guarantee")
    )
    # exactly_once commits wait for the events under way to finish (shared/streaming/eos.py); a handler stuck longer
    # than this is committed around (its first outputs may then be repeated after a crash) so the worker never stalls
    eos_settle_timeout_s: float = Field(default=30.0, gt=0, validation_alias=_common("eos_settle_timeout_s"))
    # A directory of this worker's own (a volume that outlives restarts; never shared by two workers): local
    # snapshots of the tables, so that a restart reads only the changelog written since the last one instead of
    # all of it (shared/streaming/snapshots.py). Unset: no snapshots, every restart reads the whole changelog.
    state_dir: Path | None = Field(default=None, validation_alias=_common("state_dir"))
    snapshot_interval_s: float = Field(default=120.0, ge=1, validation_alias=_common("snapshot_interval_s"))
    # older snapshots are not used (a compacted changelog forgets deletions after delete.retention.ms, 24 h)
    snapshot_max_age_s: float = Field(
        default=6 * 3600.0, gt=0, le=20 * 3600.0, validation_alias=_common("snapshot_max_age_s")
    )
    # per service (TICKETLOOP_ROUTER_METRICS_PORT, ...): /metrics for Prometheus; 0 disables the listener
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # One-click action links (shared/infra/actionlinks.py): comma-separated HMAC keys, each at least 16 characters; the
    # first signs new links, every one verifies (rotation: put the new key first, drop the old one after the TTL).
    # Unset: the notifier issues no links and intake answers /act/... with 404. Parse with keys_from_setting.
    action_link_keys: SecretStr | None = Field(default=None, validation_alias=_common("action_link_keys"))
    action_link_ttl_s: float = Field(default=7 * 86400.0, gt=0, validation_alias=_common("action_link_ttl_s"))


class IntakeSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="TICKETLOOP_INTAKE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    publish_timeout_s: float = Field(default=5.0, gt=0)
    # a request not read whole this long after its connection (or its first byte, on a kept-alive connection) is
    # answered 408 and closed: services/intake/read_timeout.py
    read_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    public_url: str = "http://127.0.0.1:8080"
    # the Slack app's signing secret, for interactive button callbacks; unset: /api/v1/slack/interactions is 404
    slack_signing_secret: SecretStr | None = None
    # the SMTP receiver for the support addresses of intake.yaml's ``mail:`` (0: off)
    smtp_port: int = Field(default=0, ge=0, le=65535)
    workers: int = Field(
        default=0,
        ge=0,
        le=64,
        description="processes answering HTTP on the one port (services/intake/workers.py; 0: one a CPU, at most 4)",
    )


class RouterSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="TICKETLOOP_ROUTER_", extra="ignore")

    risk_every_s: float = Field(
        default=60.0, ge=0, le=3600, description="how often projects' ticket and breach rates are judged (0: never)"
    )
    handover_every_s: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description="how often ended hypercares (their digest) and new handover packages (notes) are looked for "
        "(0: never)",
    )


class SlaSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="TICKETLOOP_SLA_", extra="ignore")

    timer_s: float = Field(
        default=0.02, gt=0, le=1, description="how often each partition's due clocks are looked for (the timer)"
    )
    probe_interval_s: float = Field(default=0.0, ge=0, le=60, description="> 0: a loop-lateness probe (benchmarks)")


class NotifierSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="TICKETLOOP_NOTIFIER_", extra="ignore")

    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    mail_from: str = "ticketloop@localhost"
    # a failed send is retried from the outbox (never inside a Kafka transaction): backoff from retry_base_s
    # doubling up to retry_max_s (or the vendor's Retry-After), until give_up_s after it was planned; then it is
    # dead-lettered and kept for `ticketloop deliveries redrive`
    retry_base_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)
    give_up_s: float = Field(default=24 * 3600.0, gt=0)
    # per target: this many failures in a row open its circuit; it is probed again after breaker_open_s,
    # doubling up to breaker_max_open_s while probes fail. A target that comes back is so sent to again within
    # the larger of the two maxima (30 s each; at 60 and 120 s, helper-37 saw DingTalk and Slack take their held
    # messages 66-82 s after a 5.5-minute outage ended), for one probe of a dead target every 30 s
    breaker_failures: int = Field(default=3, ge=1, le=1000)
    breaker_open_s: float = Field(default=5.0, gt=0)
    breaker_max_open_s: float = Field(default=30.0, gt=0)
    http_timeout_s: float = Field(default=10.0, gt=0)
    # while ticket events come, a fetch waits up to fetch_gather_ms for fetch_gather_bytes (Kafka's fetch.min.bytes
    # and fetch.max.wait.ms): a paced stream's events come a few a batch instead of one each (less CPU a
    # notification) for up to that much latency; 1 byte: each at once. After a poll or a fetch that brought none, a
    # fetch is answered by the first event (shared/streaming/driver.py fetch_wait, wait_when_dry).
    # bench/notify_fanout (README, 2026-12-06 sixth session): at a fixed 3,700 notifications a second 5 ms took
    # 231 us of CPU a notification and p99 24.6-25.0 ms, 8 ms 221-225 us and 26.8-30.6, 15 ms 205-210 us and
    # 39.0-39.5 (a fetch's events, handled as one batch, queue behind each other); at 0.7 of the burst (3,400-4,100
    # a second) p99 stayed under 50 ms in 10 runs of 13 at 5 ms and 3 of 5 at 15 ms (the notifier then near a whole
    # core either way); 2-3 ms took 239-263 us
    fetch_gather_bytes: int = Field(default=65_536, ge=1, le=16 * 1024 * 1024)
    fetch_gather_ms: int = Field(default=5, ge=0, le=1000)
    # where a send's outcome is journaled before the lane sends again (shared/store/journal.py); unset: beside a
    # SQLite database file, none for PostgreSQL (set it to a directory that stays with this notifier's host: a
    # notifier restarted elsewhere cannot read it, and what it held may be sent again)
    journal_dir: Path | None = None
    public_url: str = "http://127.0.0.1:8080"
