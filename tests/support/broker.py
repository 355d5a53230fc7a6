"""Which Kafka the tests use: KAFKA_BOOTSTRAP_SERVERS when set; testcontainers' Kafka when a Docker daemon
answers; otherwise the real Apache Kafka broker from Maven jars (deploy/local/kafka_local.py)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from deploy.local.kafka_local import LocalKafka


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:  # noqa: BLE001 - no daemon (DockerException ... FileNotFoundError) means: use the local broker
        return False
    return True


@contextlib.contextmanager
def kafka_broker() -> Iterator[str]:
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
        return
    with LocalKafka() as broker:
        yield broker.bootstrap
