"""Per-integration rate limits: the GCRA decision, and intake's 429 with Retry-After and the limit it ran into."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from services.intake.api import create_app
from services.intake.config import IntakeConfig
from services.intake.edge import IntakeDeps
from services.intake.limits import Limiter, RateLimitConfig, admit, retry_after
from shared.store import db
from shared.streaming.topics import Topics
from tests.fakes import FakePublisher

GEN = "gen-token-0123456789abcdef"
PD_KEY = "0123456789abcdef0123456789abcdef"


def limit(requests: int, per_s: float, burst: int | None = None) -> RateLimitConfig:
    return RateLimitConfig(requests=requests, per=timedelta(seconds=per_s), burst=burst)


def test_a_burst_goes_through_then_one_request_per_interval_with_the_wait_said() -> None:
    rule = limit(10, 1.0, burst=3)
    tat, now = float("-inf"), 100.0
    waits = []
    for _ in range(4):
        tat, wait = admit(tat, now, rule)
        waits.append(wait)
    assert waits[:3] == [0.0, 0.0, 0.0] and waits[3] == pytest.approx(0.1)
    tat, wait = admit(tat, now + 0.1, rule)
    assert wait == 0.0, "after the wait it said, one more goes"


@given(
    requests=st.integers(1, 50),
    per_s=st.floats(0.1, 10),
    burst=st.integers(1, 50),
    gaps=st.lists(st.floats(0, 0.5), min_size=1, max_size=300),
)
def test_no_span_of_time_admits_more_than_the_burst_plus_the_rate(
    requests: int, per_s: float, burst: int, gaps: list[float]
) -> None:
    rule = limit(requests, per_s, burst)
    tat, now, admitted = float("-inf"), 0.0, []
    for gap in gaps:
        now += gap
        tat, wait = admit(tat, now, rule)
        if wait == 0:
            admitted.append(now)
    interval = per_s / requests
    for i, start in enumerate(admitted):
        within = [t for t in admitted[i:] if t - start <= per_s]
        assert len(within) <= burst + per_s / interval + 1e-9


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    assert [retry_after(w) for w in (0.01, 1.0, 1.2)] == ["1", "1", "2"]


def test_a_limiter_without_a_limit_never_waits() -> None:
    assert all(Limiter().wait("x", None, float(i)) == 0 for i in range(100))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, CollectorRegistry]]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 't.db'}")
    db.init_db(engine)
    per_hour = {"requests": 2, "per": "1h"}
    config = IntakeConfig.model_validate(
        {
            "integrations": [
                {"name": "portal", "format": "generic", "token": GEN, "rate_limit": per_hour},
                {"name": "pd", "format": "pagerduty", "token": PD_KEY, "rate_limit": per_hour},
                {"name": "free", "format": "generic", "token": GEN + "x"},
            ]
        }
    )
    registry = CollectorRegistry()
    app = create_app(IntakeDeps(config, FakePublisher(), engine, Topics("t.", 2), registry))
    with TestClient(app) as c:
        yield c, registry


def test_a_sender_over_its_limit_gets_429_with_retry_after_and_the_limit_others_do_not(
    client: tuple[TestClient, CollectorRegistry],
) -> None:
    http, registry = client
    body = orjson.dumps({"summary": "s", "dedup_key": "k"})

    def post(token: str, path: str = "/api/v1/integrations/portal") -> int:
        return int(http.post(path, content=body, headers={"Authorization": f"Bearer {token}"}).status_code)

    assert [post(GEN) for _ in range(2)] == [202, 202]
    refused = http.post("/api/v1/integrations/portal", content=body, headers={"Authorization": f"Bearer {GEN}"})
    assert refused.status_code == 429
    assert 1700 <= int(refused.headers["retry-after"]) <= 1800, "one request every half hour after the burst"
    assert refused.json()["error"] == "rate limit of integration 'portal' reached: 2 requests per 3600 s (burst 2)"
    assert post("wrong-token-0123456789") == 401, "an unknown sender is refused as before, not counted"
    assert [post(GEN + "x", "/api/v1/integrations/free") for _ in range(5)] == [202] * 5
    event = {
        "routing_key": PD_KEY,
        "event_action": "trigger",
        "payload": {"summary": "s", "source": "h", "severity": "info"},
    }
    answers = [http.post("/v2/enqueue", content=orjson.dumps(event)) for _ in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert answers[2].json()["status"] == "throttled" and int(answers[2].headers["retry-after"]) >= 1700
    assert registry.get_sample_value("ticketloop_intake_requests_rejected_total", {"reason": "rate_limited"}) == 2


def test_a_rate_limit_of_nothing_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="'per' must be longer than 0"):
        RateLimitConfig.model_validate({"requests": 1, "per": "0s"})
