"""What intake takes is what the router can write: an event is at most MAX_EVENT_BYTES encoded and a request's
events at most MAX_REQUEST_EVENT_BYTES together; over either, a 413 that says which and how large, and nothing on
Kafka. (An event just under the broker's 1 MiB was taken with 202 and then stopped the router's partition: no
transaction could commit what the router wrote of it.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from services.intake.formats.common import MAX_REQUEST_EVENT_BYTES
from shared.events import MAX_EVENT_BYTES, DeadLetter
from shared.streaming.codec import decode
from tests.fakes import FakePublisher, fake_intake
from tests.unit.test_router_service import FLAT, alert, router_broker

AM, GENERIC = "am-token-0123456789abcdef", "generic-token-0123456789ab"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, FakePublisher]]:
    integrations = [
        {"name": "am", "format": "alertmanager", "token": AM},
        {"name": "portal", "format": "generic", "token": GENERIC},
    ]
    with fake_intake(tmp_path, integrations) as both:
        yield both


def webhook(alerts: list[dict[str, Any]], external_url: str = "http://am.example:9093") -> bytes:
    return orjson.dumps(
        {"version": "4", "status": "firing", "receiver": "tl", "externalURL": external_url, "alerts": alerts}
    )


def am_alert(i: int, **labels: str) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {"alertname": "Big", "instance": f"h{i}", **labels},
        "annotations": {},
        "startsAt": "2026-11-24T10:00:00Z",
        "fingerprint": f"f{i}",
    }


def post(http: TestClient, name: str, token: str, body: bytes) -> Any:
    return http.post(f"/api/v1/integrations/{name}", content=body, headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "pydantic"])
def test_an_event_over_the_limit_is_a_413_naming_it_and_nothing_is_published(
    client: tuple[TestClient, FakePublisher], lean: bool
) -> None:
    http, publisher = client
    big = am_alert(1, v="x" * (MAX_EVENT_BYTES + 1))
    if not lean:  # a time only pydantic reads sends the whole body down its path
        big["startsAt"] = "2026-11-24"
    resp = post(http, "am", AM, webhook([am_alert(0), big]))
    assert resp.status_code == 413, resp.text
    assert resp.json()["error"].startswith("event 1 of this request is ")
    assert f"an event is at most {MAX_EVENT_BYTES:,}" in resp.json()["error"]
    assert publisher.records == []
    fits = am_alert(2, v="x" * (MAX_EVENT_BYTES - 4096))
    assert post(http, "am", AM, webhook([fits])).status_code == 202
    assert len(publisher.records) == 1


def test_a_long_external_url_copied_into_every_alert_is_a_413_before_it_is_all_encoded(
    client: tuple[TestClient, FakePublisher],
) -> None:
    http, publisher = client
    url = "http://am.example/" + "u" * 100_000
    alerts = [am_alert(i) for i in range(MAX_REQUEST_EVENT_BYTES // 100_000 + 10)]  # a body of under 1 MiB
    body = webhook(alerts, url)
    assert len(body) < 1_048_576
    resp = post(http, "am", AM, body)
    assert resp.status_code == 413, resp.text
    assert resp.json()["error"].startswith(f"this request's events are over {MAX_REQUEST_EVENT_BYTES:,} bytes")
    assert publisher.records == []


def test_the_other_doors_refuse_an_event_over_the_limit_too(client: tuple[TestClient, FakePublisher]) -> None:
    http, publisher = client
    body = orjson.dumps({"summary": "big", "labels": {"v": "x" * (MAX_EVENT_BYTES + 1)}})
    resp = post(http, "portal", GENERIC, body)
    assert resp.status_code == 413 and "at most" in resp.json()["error"], resp.text
    assert publisher.records == []


def test_an_event_over_the_limit_on_the_topic_is_dead_lettered_cut_and_the_partition_goes_on(tmp_path: Path) -> None:
    """Written by an older intake or another producer: the router dead-letters it, keeping the first part (the
    whole would be over the broker's limit as a dead letter too), and routes what comes after it."""
    broker, topics = router_broker(tmp_path, FLAT)
    huge = alert(1)[:-1] + b', "x": "' + b"y" * (MAX_EVENT_BYTES * 3) + b'"}'
    broker.produce(topics.events.name, b"am/x-1", huge)
    broker.produce(topics.events.name, b"am/x-1", alert(2))
    broker.run()
    [dead] = [decode(DeadLetter, r.value) for r in broker.records(topics.deadletter.name)]
    assert dead.cut_from == len(huge) and len(dead.value) == MAX_EVENT_BYTES
    assert dead.reason.startswith(f"an event of {len(huge):,} bytes: at most {MAX_EVENT_BYTES:,}")
    assert len(list(broker.records(topics.tickets.name))) == 1, "the next event opened its ticket"


def test_a_trace_id_that_is_not_a_plain_token_of_128_characters_is_replaced(
    client: tuple[TestClient, FakePublisher],
) -> None:
    """It goes into every record of the request: a 100 kB one was copied into each alert's event."""
    http, publisher = client
    headers = {"Authorization": f"Bearer {AM}"}
    for given, kept in (("tr-plain.1:2", True), ("t" * 100_000, False), ("has space", False), ("x" * 129, False)):
        publisher.records.clear()
        resp = http.post(
            "/api/v1/integrations/am", content=webhook([am_alert(0)]), headers={**headers, "X-Trace-Id": given}
        )
        assert resp.status_code == 202, resp.text
        assert (resp.json()["trace_id"] == given) is kept
        assert [dict(r.headers)["trace_id"].decode() for r in publisher.records] == [resp.json()["trace_id"]]
