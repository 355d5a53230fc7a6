"""The Alertmanager format's lean parser (msgspec, no InboundEvent) against its pydantic one: for every body the lean
one takes, the bytes it puts on Kafka decode into the very InboundEvents the pydantic path encodes; every body it is
not sure of it declines, so the pydantic path accepts or refuses it (422 naming the field) as ever."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from pydantic import TypeAdapter, ValidationError
from starlette.testclient import TestClient

from services.intake import ingest
from services.intake.api import create_app
from services.intake.config import IntakeConfig
from services.intake.edge import IntakeDeps
from services.intake.formats import alertmanager, registry
from services.intake.formats.alertmanager import lean_events, plain_time
from services.intake.formats.common import ParsedBatch, encoded, with_severity_words
from services.intake.formats.registry import truncated_alerts
from shared.events import InboundEvent, InboundEventWire, Severity
from shared.store import db
from shared.streaming.codec import decode
from shared.streaming.topics import Topics
from tests.fakes import FakePublisher
from tests.unit.test_formats import am_alert, am_payload

NOW = datetime(2026, 11, 24, 12, 0, 0, 654321, tzinfo=UTC)
WORDS = {"disaster": Severity.critical, "warning": Severity.info}
DATETIME = TypeAdapter(datetime)


def pydantic_way(payload: Any, words: dict[str, Severity] = WORDS) -> ParsedBatch:
    """What intake did before the lean parser: pydantic models, InboundEvents, the severity words, codec.encode."""
    events = alertmanager.to_events(payload, integration="prod-am", received_at=NOW, trace_id="tr-1")
    events, unknown = with_severity_words(events, words)
    return ParsedBatch([encoded(e) for e in events], unknown, truncated_alerts("alertmanager", payload))


def lean_way(raw: bytes, words: dict[str, Severity] = WORDS, beats: str | None = None) -> ParsedBatch | None:
    return lean_events(raw, "prod-am", NOW, "tr-1", words, beats)


def assert_same(payload: Any) -> None:
    """The lean parser takes this body and gives what the pydantic way gives: the same events decoded, ids, keys,
    statuses, unknown severity words and truncated count."""
    raw = orjson.dumps(payload)
    lean = lean_way(raw)
    assert lean is not None, "the lean parser declined a body it should take"
    old = pydantic_way(orjson.loads(raw))
    assert [decode(InboundEvent, e.value) for e in lean.events] == [decode(InboundEvent, e.value) for e in old.events]
    assert [e[:3] for e in lean.events] == [e[:3] for e in old.events]
    assert (lean.unknown_words, lean.truncated) == (old.unknown_words, old.truncated)
    assert [e.value for e in lean.events] == [e.value for e in old.events], "byte for byte, as it happens"


VARIED = [
    am_alert(),
    am_alert("resolved"),
    am_alert("resolved", endsAt="0001-01-01T00:00:00Z"),  # resolved without an end: occurred at its start
    am_alert(endsAt=None),
    {k: v for k, v in am_alert().items() if k not in ("endsAt", "annotations", "generatorURL", "fingerprint")},
    am_alert(fingerprint="", labels={"zeta": "1", "alpha": "2", "severity": "Disaster "}),
    am_alert(annotations={"description": "only a description", "runbook": "https://runbooks/x"}),
    am_alert(annotations={"summary": "", "description": ""}, labels={"alertname": "NoText"}),
    am_alert(annotations={}, labels={"instance": "no-name"}),
    am_alert(labels={"alertname": "Ünïcødé ☃ 🚨", "team": "数据库", "severity": "WARNING"}),
    am_alert(annotations={"summary": 'quotes " and \\ and \n newline \t tab \u2028 \u0000 </script>'}),
    am_alert(annotations={"summary": "x" * 3000}),
    am_alert(labels={"alertname": "a", "severity": "sev-unheard-of-" + "w" * 80}),
    am_alert(startsAt="2026-11-24T10:00:00.123456789Z", endsAt="0001-01-01T00:00:00.000Z"),
    am_alert("resolved", startsAt="2026-11-24T10:00:00.9999999Z", endsAt="2026-11-24T11:00:00.1+02:00"),
    am_alert(startsAt="2026-11-24T10:00:00-07:30"),
    am_alert(startsAt="2026-11-24T10:00:00", endsAt="2026-11-24T11:00:00"),  # naive: read as they are
    am_alert(startsAt="1970-01-02T00:00:00Z"),
    am_alert(dashboardURL="http://grafana/d/1", panelURL="", silenceURL=5, imageURL="http://img", other={"x": [1]}),
    am_alert(generatorURL="", fingerprint="Ω" * 20),
]


@pytest.mark.parametrize("alert", VARIED, ids=range(len(VARIED)))
def test_each_kind_of_alert_gives_the_same_event_either_way(alert: dict[str, Any]) -> None:
    assert_same(am_payload(alert, status=alert["status"]))


def test_a_webhook_of_many_alerts_and_every_top_level_field_gives_the_same_events() -> None:
    payload = {**am_payload(*VARIED), "truncatedAlerts": 7, "extra": {"kept": ["by pydantic"]}, "externalURL": ""}
    assert_same(payload)
    assert_same({"version": "4", "status": "resolved", "alerts": VARIED[:3], "truncatedAlerts": -2})


def test_the_wire_struct_mirrors_inbound_event_field_for_field() -> None:
    assert InboundEventWire.__struct_fields__ == tuple(InboundEvent.model_fields)


TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
LABELS = st.dictionaries(st.sampled_from(["alertname", "severity", "instance", "x"]) | TEXT, TEXT, max_size=4)
TIMES = st.sampled_from(["2026-11-24T10:00:00Z", "2026-11-24T10:00:00.5+01:00", "0001-01-01T00:00:00Z"]) | st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(8999, 1, 1), timezones=st.sampled_from([UTC, None])
).map(datetime.isoformat)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    alerts=st.lists(
        st.fixed_dictionaries(
            {"status": st.sampled_from(["firing", "resolved"]), "labels": LABELS.filter(bool), "startsAt": TIMES},
            optional={
                "annotations": st.dictionaries(st.sampled_from(["summary", "description"]) | TEXT, TEXT, max_size=3),
                "endsAt": TIMES | st.none(),
                "generatorURL": TEXT,
                "fingerprint": TEXT,
                "dashboardURL": TEXT | st.integers(-(2**63), 2**63 - 1),
            },
        ),
        min_size=1,
        max_size=4,
    ),
    severity_words=st.dictionaries(st.sampled_from(["disaster", "critical", "x", "p9"]), st.sampled_from(Severity)),
)
def test_any_webhook_the_lean_parser_takes_gives_the_same_events(
    alerts: list[dict[str, Any]], severity_words: dict[str, Severity]
) -> None:
    payload = am_payload(*alerts)
    raw = orjson.dumps(payload)
    lean = lean_way(raw, severity_words)
    try:
        old = pydantic_way(orjson.loads(raw), severity_words)
    except ValidationError:
        assert lean is None, "the lean parser took what pydantic refuses"
        return
    assert lean is not None, "the lean parser declined a webhook of plain times"
    assert [decode(InboundEvent, e.value) for e in lean.events] == [decode(InboundEvent, e.value) for e in old.events]
    assert [e[:3] for e in lean.events] == [e[:3] for e in old.events]
    assert lean.unknown_words == old.unknown_words
    assert [e.value for e in lean.events] == [e.value for e in old.events]


@settings(max_examples=300, deadline=None)
@given(
    text=st.from_regex(alertmanager._PLAIN_TIME, fullmatch=True)
    | st.from_regex(
        r"[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9](\.[0-9]{1,9})?(Z|[+-][0-2][0-9]:[0-5][0-9])?",
        fullmatch=True,
    )
)
def test_a_plain_time_is_read_as_pydantic_reads_it_or_left_to_pydantic(text: str) -> None:
    ours = plain_time(text)
    try:
        theirs = DATETIME.validate_python(text)
    except ValidationError:
        assert ours is None, f"{text!r}: pydantic refuses it"
        return
    if ours is not None:
        assert (ours, ours.isoformat(), ours.utcoffset()) == (theirs, theirs.isoformat(), theirs.utcoffset())


def test_times_go_to_the_microsecond_truncated_as_pydantic_does_not_rounded() -> None:
    assert plain_time("2026-11-24T10:00:00.9999999Z") == datetime(2026, 11, 24, 10, 0, 0, 999999, tzinfo=UTC)
    assert plain_time("2026-11-24T10:00:00.5-07:30") == datetime(
        2026, 11, 24, 10, 0, 0, 500000, tzinfo=timezone(-timedelta(hours=7, minutes=30))
    )


DECLINED = [
    {**am_payload(am_alert()), "version": "3"},
    {**am_payload(am_alert()), "version": 4},
    am_payload(),
    am_payload(am_alert(startsAt="yesterday")),
    am_payload(am_alert(startsAt="1969-12-31T23:00:00Z")),
    am_payload(am_alert(startsAt="9001-01-01T00:00:00Z")),
    am_payload(am_alert("resolved", endsAt="9999-01-01T00:00:00Z")),
    am_payload(am_alert(status="burning")),
    am_payload(am_alert(labels={"a": 1})),
    am_payload(am_alert(labels={})),
    am_payload(am_alert(annotations=None)),
    am_payload(am_alert(generatorURL=None)),
    {**am_payload(am_alert()), "commonLabels": {"a": 1}},
    {**am_payload(am_alert()), "truncatedAlerts": True},
    {**am_payload(am_alert()), "truncatedAlerts": 3.0},
    {**am_payload(am_alert()), "truncatedAlerts": "3"},
    {**am_payload(am_alert()), "alerts": [am_alert()] * 10_001},
    am_payload(am_alert(fingerprint="f" * 250)),  # prod-am/ + 250: over InboundEvent's 255 for a dedup key
    # pydantic reads these times, the lean parser leaves them to it
    am_payload(am_alert(startsAt="2026-11-24")),
    am_payload(am_alert(startsAt="2026-11-24t10:00:00z")),
    am_payload(am_alert(startsAt="2026-11-24 10:00:00Z")),
    am_payload(am_alert(startsAt="2026-11-24T10:00:00,5Z")),
    am_payload(am_alert(startsAt="2026-11-24T10:00Z")),
    am_payload(am_alert(startsAt="2026-11-24T10:00:00+0200")),
    am_payload(am_alert(startsAt="1700000000")),
    [],
    "text",
]


@pytest.mark.parametrize("payload", DECLINED, ids=range(len(DECLINED)))
def test_what_the_lean_parser_is_not_sure_of_it_leaves_to_pydantic(payload: Any) -> None:
    assert lean_way(orjson.dumps(payload)) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"  ",
        b'{"version": "4",',
        b'{"a":"\\ud800"}',
        b"\xef\xbb\xbf{}",
        b'{"truncatedAlerts": 123456789012345678901}',
        b'{"x":' + b"[" * 2000 + b"]" * 2000 + b', "version": "4", "alerts": []}',  # msgspec skips it by recursion
    ],
)
def test_malformed_or_odd_json_is_left_to_pydantic(raw: bytes) -> None:
    assert lean_way(raw) is None


def test_json_nested_past_what_is_read_is_a_400(intake: tuple[TestClient, FakePublisher]) -> None:
    client, publisher = intake
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for depth, status in ((990, 422), (5000, 400)):  # read, then refused for its fields; past orjson's depth: 400
        body = b'{"version": "4", "x":' + b"[" * depth + b"]" * depth + b', "alerts": []}'
        resp = client.post("/api/v1/integrations/am", content=body, headers=headers)
        assert resp.status_code == status, resp.text
    assert "depth" in resp.json()["error"]
    assert publisher.records == []


def test_the_integrations_heartbeat_alert_is_left_to_the_pydantic_way_which_makes_it_a_beat() -> None:
    watchdog = am_payload(am_alert(labels={"alertname": "Watchdog"}))
    assert lean_way(orjson.dumps(watchdog), beats="Watchdog") is None
    assert lean_way(orjson.dumps(watchdog), beats="Other") is not None
    resolved = am_payload(am_alert("resolved", labels={"alertname": "Watchdog"}), status="resolved")
    assert lean_way(orjson.dumps(resolved), beats="Watchdog") is not None  # only a firing one is a beat


@pytest.fixture
def intake(tmp_path: Path) -> Iterator[tuple[TestClient, FakePublisher]]:
    config = IntakeConfig.model_validate(
        {
            "integrations": [
                {
                    "name": "am",
                    "format": "alertmanager",
                    "token": TOKEN,
                    "severities": {"Disaster": "critical"},
                    "heartbeat": {"every": "1m"},
                }
            ]
        }
    )
    engine = db.make_engine(f"sqlite:///{tmp_path / 't.db'}")
    db.init_db(engine)
    publisher = FakePublisher()
    with TestClient(create_app(IntakeDeps(config, publisher, engine, Topics("t.", 2), CollectorRegistry()))) as c:
        yield c, publisher


class FrozenClock(datetime):
    @classmethod
    def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
        return datetime.fromtimestamp(NOW.timestamp(), tz)


TOKEN = "am-token-0123456789abcdef"


@pytest.mark.parametrize(
    "payload",
    [
        {**am_payload(*VARIED), "truncatedAlerts": 3},
        am_payload(am_alert(labels={"alertname": "Watchdog"}), am_alert(labels={"severity": "disaster", "a": "b"})),
        am_payload(am_alert(startsAt="2026-11-24")),  # a time only pydantic reads
        am_payload(am_alert(startsAt="2026-11-24T10:00:00", endsAt="2026-11-24T11:00:00")),  # no offset: UTC
    ],
    ids=["varied", "watchdog", "date-only", "no-offset"],
)
def test_intake_answers_and_publishes_the_same_with_the_lean_parser_or_without(
    intake: tuple[TestClient, FakePublisher], payload: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, publisher = intake
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Trace-Id": "tr-9"}
    monkeypatch.setattr(ingest, "datetime", FrozenClock)  # a heartbeat's beat id hashes the time it came

    def post() -> tuple[Any, list[tuple[str, str, InboundEvent, list[tuple[str, bytes]]]]]:
        publisher.records.clear()
        resp = client.post("/api/v1/integrations/am", content=orjson.dumps(payload), headers=headers)
        assert resp.status_code == 202, resp.text
        return resp.json(), [(r.topic, r.key, decode(InboundEvent, r.value), r.headers) for r in publisher.records]

    lean = post()
    monkeypatch.delitem(registry.LEAN_PARSERS, "alertmanager")
    assert post() == lean
