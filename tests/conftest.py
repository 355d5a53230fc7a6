from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.broker import kafka_broker
from tests.support.postgres import local_postgres
from tests.support.secrets import configured_secrets, leaks, service_logs


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    with kafka_broker() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with local_postgres() as url:
        yield url


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_service_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the whole run: no log any service wrote (every stack the tests started) holds a configured secret."""
    yield
    logs = service_logs(tmp_path_factory.getbasetemp())
    if logs:
        found = leaks(logs, configured_secrets())
        assert found == [], f"configured secrets in service logs: {found}"
