from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.broker import kafka_broker
from tests.support.postgres import local_postgres


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    with kafka_broker() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with local_postgres() as url:
        yield url
