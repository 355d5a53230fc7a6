"""intake as a process against the real broker: what it accepts is on Kafka, keyed and traced, and nothing it
answered 202 for is lost across a broker outage (during which it answers 503 so senders retry)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import orjson
import pytest

from deploy.local.kafka_local import LocalKafka, free_port
from deploy.local.stack import Stack
from tests.support.configs import GEN_TOKEN, GRAFANA_KEY, GRAFANA_TOKEN, write_config
from tests.support.kafka_io import read_all
from tests.unit.test_grafana import grafana_alert, grafana_payload, sign

pytestmark = pytest.mark.integration


def intake_stack(bootstrap: str, tmp_path: Path, prefix: str) -> Stack:
    return Stack(
        bootstrap=bootstrap,
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        config_dir=write_config(tmp_path),
        workdir=tmp_path / "logs",
        intake_port=free_port(),
        smtp_port=9,
        extra_env={"TICKETLOOP_TOPIC_PREFIX": prefix, "TICKETLOOP_INTAKE_PUBLISH_TIMEOUT_S": "2"},
    )


def post(client: httpx.Client, event_id: str) -> httpx.Response:
    return client.post(
        "/api/v1/integrations/portal",
        json={"summary": f"event {event_id}", "dedup_key": f"k-{event_id}", "event_id": event_id},
        headers={"Authorization": f"Bearer {GEN_TOKEN}", "X-Trace-Id": f"trace-{event_id}"},
    )


def test_accepted_events_are_on_kafka_keyed_by_dedup_key_with_trace_headers(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = f"it-intake-{time.time_ns()}."
    stack = intake_stack(kafka_bootstrap, tmp_path, prefix)
    stack.start("intake")
    try:
        stack.wait_ready()
        client = httpx.Client(base_url=stack.intake_url, timeout=10)
        for i in range(25):
            assert post(client, f"e{i}").status_code == 202
        records = asyncio.run(read_all(kafka_bootstrap, f"{prefix}events", expect=25))
    finally:
        stack.stop_all()
    assert len(records) == 25
    by_id = {orjson.loads(r.value)["event_id"]: r for r in records}
    assert set(by_id) == {f"e{i}" for i in range(25)}
    r = by_id["e7"]
    assert r.key == b"portal/k-e7"
    assert ("trace_id", b"trace-e7") in r.headers
    assert ("event_id", b"e7") in r.headers


def test_nothing_accepted_is_lost_across_a_broker_outage(tmp_path: Path) -> None:
    prefix = f"it-outage-{time.time_ns()}."
    with LocalKafka() as broker:
        stack = intake_stack(broker.bootstrap, tmp_path, prefix)
        stack.start("intake")
        try:
            stack.wait_ready()
            client = httpx.Client(base_url=stack.intake_url, timeout=30)
            accepted = [f"before-{i}" for i in range(10) if post(client, f"before-{i}").status_code == 202]
            assert len(accepted) == 10

            broker.halt()
            down = post(client, "during-outage")
            assert down.status_code == 503
            assert down.headers["retry-after"]
            assert "retry" in down.json()["error"]

            broker.resume()
            # a sender retries until it is accepted (bounded)
            for i in range(10):
                event_id = f"after-{i}"
                deadline = time.monotonic() + 120
                while post(client, event_id).status_code != 202:
                    assert time.monotonic() < deadline, "intake never recovered after the broker came back"
                    time.sleep(0.5)
                accepted.append(event_id)
            records = asyncio.run(read_all(broker.bootstrap, f"{prefix}events", expect=len(accepted), within_s=60))
        finally:
            stack.stop_all()
    on_kafka = [orjson.loads(r.value)["event_id"] for r in records]
    missing = set(accepted) - set(on_kafka)
    assert not missing, f"accepted but lost: {sorted(missing)}"


def test_grafana_alerts_posted_and_put_signed_and_unsigned_are_on_kafka_and_a_forged_one_is_not(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = f"it-grafana-{time.time_ns()}."
    stack = intake_stack(kafka_bootstrap, tmp_path, prefix)
    stack.start("intake")
    auth = {"Authorization": f"Bearer {GRAFANA_TOKEN}"}
    try:
        stack.wait_ready()
        client = httpx.Client(base_url=stack.intake_url, timeout=10)
        plain = orjson.dumps(grafana_payload(grafana_alert(fingerprint="plain")))
        assert client.post("/api/v1/integrations/grafana", content=plain, headers=auth).status_code == 202
        signed = orjson.dumps(grafana_payload(grafana_alert(fingerprint="signed")))
        stamp = str(int(time.time()))
        headers = {
            **auth,
            "X-Grafana-Alerting-Signature": sign(signed, stamp, GRAFANA_KEY),
            "X-Grafana-Alerting-Signature-Timestamp": stamp,
        }
        assert client.put("/api/v1/integrations/grafana-signed", content=signed, headers=headers).status_code == 202
        forged = orjson.dumps(grafana_payload(grafana_alert(fingerprint="forged")))
        refused = client.post("/api/v1/integrations/grafana-signed", content=forged, headers=headers)
        assert refused.status_code == 401
        records = asyncio.run(read_all(kafka_bootstrap, f"{prefix}events", expect=2))
        after = asyncio.run(read_all(kafka_bootstrap, f"{prefix}events", within_s=5))
    finally:
        stack.stop_all()
    keys = sorted(r.key for r in records)
    assert keys == [b"grafana-signed/signed", b"grafana/plain"]
    assert len(after) == 2, "the forged request put nothing on Kafka"
    assert GRAFANA_KEY not in (tmp_path / "logs" / "intake.log").read_text()
