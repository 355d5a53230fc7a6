"""Whatever reaches the one-click and Slack endpoints, intake answers with a clear 4xx (or the page), never a 500,
and acts only on a valid, signed request. (Hypothesis drives the inputs; the app is the real one over SQLite with a
fake publisher.)"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.fakes import FakePublisher
from tests.unit.test_intake_actions import SLACK_SECRET, Intake, make_intake

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def intake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Intake]:
    yield from make_intake(Path(tmp_path_factory.mktemp("fuzz")), FakePublisher())


@FUZZ
@given(token=st.text(max_size=400), method=st.sampled_from(["GET", "POST", "HEAD"]), body=st.binary(max_size=300))
def test_any_action_link_is_answered_without_a_500_and_acts_never(
    intake: Intake, token: str, method: str, body: bytes
) -> None:
    before = len(intake.publisher.records)
    resp = intake.client.request(method, f"/act/{quote(token, safe='')}", content=body)
    assert resp.status_code < 500 or resp.status_code == 503, (token, resp.status_code)
    assert len(intake.publisher.records) == before, "a made-up link never acts"


@FUZZ
@given(payload=JSON, raw=st.binary(max_size=200), signed=st.booleans(), as_form=st.booleans())
@example(payload={"actions": [{"value": -(2**63) - 1}]}, raw=b"", signed=True, as_form=True)
def test_any_slack_callback_is_answered_without_a_500(
    intake: Intake, payload: object, raw: bytes, signed: bool, as_form: bool
) -> None:
    # json, not orjson: any JSON reaches the endpoint, integers beyond 64 bits too (orjson cannot write them)
    body = urlencode({"payload": json.dumps(payload)}).encode() if as_form else raw
    timestamp = str(int(time.time()))
    mac = hmac.new(SLACK_SECRET.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": f"v0={mac}" if signed else "v0=00"}
    before = len(intake.publisher.records)
    resp = intake.client.post("/api/v1/slack/interactions", content=body, headers=headers)
    assert resp.status_code < 500, resp.status_code
    if not signed:
        assert resp.status_code == 401
    assert len(intake.publisher.records) == before, "no valid action-link token in it: nothing acts"


@FUZZ
@given(
    query=st.dictionaries(st.sampled_from(["status", "limit", "x"]), st.text(max_size=20), max_size=3),
    nid=st.text(max_size=80),
)
def test_the_deliveries_api_answers_any_query_without_a_500(intake: Intake, query: dict[str, str], nid: str) -> None:
    headers = {"Authorization": "Bearer wrong-token-0123456789"}
    assert intake.client.get("/api/v1/deliveries", params=query, headers=headers).status_code == 401
    assert intake.client.post(f"/api/v1/deliveries/{quote(nid, safe='')}/redrive", headers=headers).status_code in (
        401,
        404,
        405,
    )
