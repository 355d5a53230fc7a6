"""Property-based fuzzing of intake's whole HTTP surface from its own OpenAPI document (schemathesis), against the
running intake on the real broker, bounded in count: requests that fit the document and requests that break it
(schemathesis's negative mode: wrong types, missing fields, values out of range), and no answer is a server error,
the process stays alive, and every event intake accepted (2xx) is on Kafka."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok

from deploy.local.kafka_local import free_port
from deploy.local.stack import Stack
from tests.support.configs import write_config
from tests.support.kafka_io import read_all

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
TOKEN = "fuzz-token-0123456789abcdef01234"  # 32 characters: a PagerDuty routing key too
INTAKE_YAML = f"""
integrations:
  - {{name: am, format: alertmanager, token: {TOKEN}, heartbeat: {{every: 1h}}}}
  - {{name: portal, format: generic, token: {TOKEN}, rate_limit: {{requests: 1000, per: 1s}}}}
  - {{name: grafana, format: grafana, token: {TOKEN}}}
  - {{name: og, format: opsgenie, token: {TOKEN}}}
  - {{name: pd, format: pagerduty, token: {TOKEN}}}
api_clients:
  - {{name: fuzzer, token: {TOKEN}, role: admin, acts_for: ["*"]}}
"""
EXAMPLES = 30
NEGATIVE_EXAMPLES = 15
ACCEPTED: list[int] = []
"""Events accepted by each 2xx answer of an event-making endpoint."""


@pytest.fixture(scope="module")
def intake(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    root = tmp_path_factory.mktemp("fuzz")
    config = write_config(root)
    (config / "intake.yaml").write_text(INTAKE_YAML)
    prefix = f"it-fuzz-{time.time_ns()}."
    stack = Stack(
        kafka_bootstrap,
        f"sqlite:///{root / 'db.sqlite'}",
        config,
        root / "logs",
        free_port(),
        9,
        extra_env={"TICKETLOOP_TOPIC_PREFIX": prefix, "TICKETLOOP_INTAKE_PUBLISH_TIMEOUT_S": "5"},
    )
    stack.start("intake")
    try:
        stack.wait_ready()
        yield stack, prefix
    finally:
        stack.stop_all()


def events_accepted(path: str, status: int, body: Any) -> int:
    """Events an answer says were accepted (0 for anything that makes none)."""
    if status >= 300 or not isinstance(body, dict):
        return 0
    if path.startswith("/api/v1/integrations/"):
        return len(body.get("events", []))
    return 1 if path.startswith(("/v2/enqueue", "/v2/alerts", "/api/v1/heartbeats/")) else 0


def test_no_input_is_a_server_error(intake: tuple[Stack, str]) -> None:
    """Each operation of the document, EXAMPLES generated requests each (schemathesis's strategies, driven here
    by hypothesis: its own pytest plugin does not run on this pytest)."""
    stack, _ = intake
    loaded = schemathesis.openapi.from_url(f"{stack.intake_url}/openapi.json")
    results = list(loaded.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results) >= 25, "every operation of the document loads"

    fuzzed = 0
    for operation, mode, examples in (
        (op, mode, n)
        for op in operations
        for mode, n in ((GenerationMode.POSITIVE, EXAMPLES), (GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES))
    ):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case: Any) -> None:
            auth = "GenieKey" if case.path.startswith("/v2/alerts") else "Bearer"
            response = case.call(headers={"Authorization": f"{auth} {TOKEN}"})
            case.validate_response(response, checks=(not_a_server_error,))
            try:
                body = response.json()
            except ValueError:
                body = None
            ACCEPTED.append(events_accepted(case.path, response.status_code, body))

        try:
            fuzz()
            fuzzed += 1
        except Unsatisfiable:  # nothing to break: no parameters and no body (GET /healthz, /metrics, ...)
            assert mode is GenerationMode.NEGATIVE, f"no request fits {operation.label}"
    assert fuzzed > 2 * len(operations) - 10, "most operations were fuzzed with requests that break the document"


def test_after_the_fuzzing_intake_is_alive_and_every_accepted_event_is_on_kafka(
    intake: tuple[Stack, str], kafka_bootstrap: str
) -> None:
    stack, prefix = intake
    stack.check_alive()
    expected = sum(ACCEPTED)
    assert ACCEPTED, "the fuzz test ran first"
    on_kafka = (
        asyncio.run(read_all(kafka_bootstrap, f"{prefix}events", expect=expected, within_s=60)) if expected else []
    )
    assert len(on_kafka) >= expected, f"{expected} events accepted, {len(on_kafka)} on Kafka"
    assert expected > 0, "some generated requests were accepted: the fuzzing reached past validation"
