"""Every route of intake's app, whatever method, path parameters, query, headers and body reach it: answered
below 500 (503 only from /readyz), never an exception. Hypothesis drives the inputs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from services.intake.config import IntakeConfig
from tests.fakes import FakePublisher
from tests.support.fuzzing import json_objects
from tests.unit.test_intake_actions import Intake, make_intake

TEXT = st.text(max_size=60) | st.sampled_from(["", "..", "%", "%00", "²", "٣", "-1", "0", "9" * 40, "a/b", "\x00"])
HEADER_VALUE = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=40)
HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "content-type",
            "authorization",
            "x-slack-request-timestamp",
            "x-slack-signature",
            "x-grafana-alerting-signature",
            "x-ticketloop-signature",
            "x-ticketloop-timestamp",
            "accept-language",
            "if-none-match",
            "accept",
            "cookie",
            "x-forwarded-for",
        ]
    ),
    HEADER_VALUE,
    max_size=4,
)
JSON_TEXT = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)
BODY = st.binary(max_size=300) | JSON_TEXT.map(lambda v: json.dumps(v).encode())
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def intake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Intake]:
    yield from make_intake(Path(tmp_path_factory.mktemp("every")), FakePublisher())


def below_500(status: int, path: str) -> bool:
    """An answer a fuzzed request may get: anything below 500, and 503 from /readyz (not ready is its answer)."""
    return status < 500 or (status == 503 and path == "/readyz")


def routes(intake: Intake) -> list[tuple[str, list[str]]]:
    app = intake.client.app
    return [(r.path, sorted(r.methods or ["GET"])) for r in app.routes if isinstance(r, Route)]  # type: ignore[attr-defined]


def test_every_route_answers_any_request_below_500(intake: Intake) -> None:
    """Each route in turn, its own examples: a fault in one route's parsing is found however many routes there
    are."""
    found = routes(intake)
    assert len(found) > 30, "the app's routes are read"
    for path, methods in found:
        answers_below_500(intake, path, methods)


def answers_below_500(intake: Intake, path: str, methods: list[str]) -> None:
    @FUZZ
    @given(data=st.data())
    def one(data: st.DataObject) -> None:
        method = data.draw(st.sampled_from([*methods, "POST", "GET", "PUT", "DELETE"]))
        filled = re.sub(r"\{[^}]+\}", lambda _: quote(data.draw(TEXT), safe=""), path)
        query = data.draw(st.dictionaries(st.text(max_size=10), TEXT, max_size=3))
        headers = {k: v.encode("latin-1") for k, v in data.draw(HEADERS).items()}
        body = data.draw(BODY)
        resp = intake.client.request(method, filled, params=query, headers=headers, content=body)
        assert below_500(resp.status_code, path), (
            method,
            filled,
            query,
            headers,
            body[:80],
            resp.status_code,
            resp.text[:300],
        )

    one()


# --- with the right credentials: the parsing behind the token is reached -----------------------------------------
TOKENS = {"am": "am-token-0123456789", "gen": "generic-token-0123456789", "og": "genie-key-0123456789"}
PD_KEY = "P" * 32
ADMIN = "admin-token-0123456789"
AUTHORIZED = IntakeConfig.model_validate(
    {
        "integrations": [
            {"name": "am", "format": "alertmanager", "token": TOKENS["am"]},
            {"name": "gen", "format": "generic", "token": TOKENS["gen"]},
            {"name": "og", "format": "opsgenie", "token": TOKENS["og"]},
            {"name": "pd", "format": "pagerduty", "token": PD_KEY},
        ],
        "api_clients": [{"name": "console", "token": ADMIN, "role": "admin", "acts_for": ["alice"]}],
    }
)
FIELDS = [
    "alerts",
    "labels",
    "annotations",
    "status",
    "startsAt",
    "endsAt",
    "fingerprint",
    "generatorURL",
    "groupKey",
    "matchers",
    "duration",
    "comment",
    "person",
    "until",
    "reason",
    "starts_at",
    "ends_at",
    "note",
    "summary",
    "severity",
    "source",
    "dedup_key",
    "event_action",
    "routing_key",
    "payload",
    "message",
    "alias",
    "priority",
    "tags",
    "title",
    "description",
    "service",
    "ticket_id",
    "team",
    "assignee",
    "minutes",
    "custom_details",
    "links",
    "images",
    "details",
    "entity",
    "user",
    "state",
    "created_by",
]
OBJECT = json_objects(FIELDS, TEXT)
SIGNED_FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def authorized(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Intake]:
    yield from make_intake(Path(tmp_path_factory.mktemp("authorized")), FakePublisher(), AUTHORIZED)


def credentials(path: str, filled: str, body: dict[str, object]) -> tuple[dict[str, str], dict[str, object]]:
    """The headers and body a rightful sender of this route gives."""
    if path.startswith("/api/v1/integrations/"):
        name = filled.rsplit("/", 1)[-1]
        return {"authorization": f"Bearer {TOKENS.get(name, '')}"}, body
    if path.startswith("/v2/enqueue") or path.startswith("/v2/change"):
        return {}, {**body, "routing_key": PD_KEY}
    if path.startswith("/v2/alerts"):
        return {"authorization": f"GenieKey {TOKENS['og']}"}, body
    return {"authorization": f"Bearer {ADMIN}"}, body


def test_every_route_answers_any_body_its_rightful_sender_posts_below_500(authorized: Intake) -> None:
    for path, methods in routes(authorized):
        answers_signed_below_500(authorized, path, methods)


def answers_signed_below_500(intake: Intake, path: str, methods: list[str]) -> None:
    @SIGNED_FUZZ
    @given(data=st.data())
    def one(data: st.DataObject) -> None:
        method = data.draw(st.sampled_from(methods))
        names = st.sampled_from([*TOKENS, "pd"]) if path.startswith("/api/v1/integrations/") else TEXT
        filled = re.sub(r"\{[^}]+\}", lambda _: quote(data.draw(names), safe=""), path)
        headers, body = credentials(path, filled, dict(data.draw(OBJECT)))
        raw = json.dumps(data.draw(st.sampled_from([body, body.get("alerts", body), [body]])))
        headers["content-type"] = "application/json"
        resp = intake.client.request(method, filled, headers=headers, content=raw.encode())
        assert below_500(resp.status_code, path), (
            method,
            filled,
            raw[:300],
            resp.status_code,
            resp.text[:300],
        )

    one()
