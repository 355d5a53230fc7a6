"""What-if replay: a recorded stream against the live and a proposed policy, on a simulated clock."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.cli import main
from services.sla.replay import Summary, compare, replay
from services.sla.replay_io import read_events
from shared.events import Change, TicketEvent, TicketState
from shared.streaming.codec import encode
from tests.unit.factories import T0, ticket_event

MIN = timedelta(minutes=1)
LIVE = """
policies:
  default:
    acknowledge: {P1: 5m}
    escalation: [{after: 0s, team: owner}, {after: 10m, team: leads}]
"""
PROPOSED = """
version: 2
policies:
  default:
    acknowledge: {P1: 3m}
    warnings: [0.5]
    escalation: [{after: 0s, team: owner}, {after: 10m, team: leads}]
"""


def load(text: str, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def change(ticket_id: str, version: int, kind: Change, at_min: float, **over: object) -> TicketEvent:
    return ticket_event(kind, version, at=T0 + at_min * MIN, ticket_id=ticket_id, **over)


STREAM = [
    change("tl-a", 1, Change.opened, 0),
    change("tl-b", 1, Change.opened, 1, opened_at=T0 + MIN),
    # A is acknowledged after 4 minutes: in time under 5m, late under 3m
    change("tl-a", 2, Change.acknowledged, 4, state=TicketState.acknowledged, acknowledged_at=T0 + 4 * MIN),
    # B is acknowledged after 1 minute: in time under both
    change("tl-b", 2, Change.acknowledged, 2, state=TicketState.acknowledged, acknowledged_at=T0 + 2 * MIN),
    change("tl-c", 1, Change.opened, 30, opened_at=T0 + 30 * MIN),
]


def configs(tmp_path: Path) -> tuple[Path, Path]:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    load(LIVE, config_dir, "sla.yaml")
    return config_dir, load(PROPOSED, tmp_path, "proposed.yaml")


def test_replay_fires_at_the_due_times_and_compare_finds_the_tickets_treated_differently(tmp_path: Path) -> None:
    from services.sla.policy import SlaConfig
    from shared.infra.config import load_yaml_model

    config_dir, proposed_path = configs(tmp_path)
    live = load_yaml_model(config_dir / "sla.yaml", SlaConfig)
    proposed = load_yaml_model(proposed_path, SlaConfig)
    # shuffled input: the replay orders by time
    stream = list(reversed(STREAM))
    until = T0 + 60 * MIN
    before, after = replay(stream, live, until=until), replay(stream, proposed, until=until)
    assert before.events == after.events == 5 and before.tickets == {"tl-a", "tl-b", "tl-c"}
    assert before.summary("tl-a") == Summary()
    assert after.summary("tl-a") == Summary(breaches=1, warnings=1, escalations=1, top_level=1)
    assert [(f.kind, f.fired_at) for f in after.fired["tl-a"]] == [
        ("warning", T0 + 1.5 * MIN),
        ("breach", T0 + 3 * MIN),
        ("escalation", T0 + 3 * MIN),
    ]
    # C is never acknowledged: both chains run to the end by 'until'
    assert before.summary("tl-c") == Summary(breaches=1, escalations=2, top_level=2)
    assert after.summary("tl-c") == Summary(breaches=1, warnings=1, escalations=2, top_level=2)
    differences = compare(before, after)
    assert [d.ticket_id for d in differences] == ["tl-a", "tl-c"], "B was acknowledged before even the warning"


def test_without_until_the_clocks_stop_at_the_last_event(tmp_path: Path) -> None:
    from services.sla.policy import SlaConfig
    from shared.infra.config import load_yaml_model

    config_dir, _ = configs(tmp_path)
    live = load_yaml_model(config_dir / "sla.yaml", SlaConfig)
    result = replay(STREAM, live)
    assert result.summary("tl-c") == Summary(), "C opened with the last event: nothing was due yet"


def test_the_cli_reports_the_differences_from_a_jsonl_file(tmp_path: Path) -> None:
    config_dir, proposed = configs(tmp_path)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(encode(e) for e in STREAM) + b"\n\n")
    assert len(read_events(events)) == 5
    out = io.StringIO()
    argv = ["sla", "replay", "--events", str(events), "--proposed", str(proposed), "--config-dir", str(config_dir)]
    code = main([*argv, "--until", (T0 + 60 * MIN).isoformat(), "--no-progress"], out)
    text = out.getvalue()
    assert code == 0, text
    assert "replayed 5 ticket events of 3 tickets" in text
    assert "live v1" in text and "proposed.yaml v2" in text, "each side's sla.yaml version"
    assert "2 ticket(s) would have been treated differently" in text
    assert "tl-a: met, 0 warning(s), 0 escalation(s) (top level 0) -> breached, 1 warning(s)" in text


def test_a_bad_line_is_named_by_file_and_line(tmp_path: Path) -> None:
    config_dir, proposed = configs(tmp_path)
    events = tmp_path / "events.jsonl"
    events.write_bytes(encode(STREAM[0]) + b'\n{"change": "opened"}\n')
    out = io.StringIO()
    argv = ["sla", "replay", "--events", str(events), "--proposed", str(proposed), "--config-dir", str(config_dir)]
    assert main([*argv, "--no-progress"], out) == 1
    assert f"error: {events}:2: invalid TicketEvent: " in out.getvalue()
    bad_policy = load("policies: {}\n", tmp_path, "bad.yaml")
    out = io.StringIO()
    argv[argv.index("--proposed") + 1] = str(bad_policy)
    assert main([*argv, "--no-progress"], out) == 1
    assert "bad.yaml" in out.getvalue() and "default" in out.getvalue()


def test_without_until_the_cli_runs_the_clocks_to_now_and_says_so(tmp_path: Path) -> None:
    """A ticket still open past its deadline has breached by now, though nothing was recorded after it (the
    clocks stopping at the last event showed it as met)."""
    config_dir, proposed = configs(tmp_path)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(encode(e) for e in STREAM) + b"\n")
    out = io.StringIO()
    argv = ["sla", "replay", "--events", str(events), "--proposed", str(proposed), "--config-dir", str(config_dir)]
    before = datetime.now(UTC)
    assert main([*argv, "--no-progress"], out) == 0
    text = out.getvalue()
    horizon = datetime.fromisoformat(text.split("clocks run to ", 1)[1].split("\n", 1)[0])
    assert horizon >= before
    breached = next(line for line in text.splitlines() if line.startswith("breached"))
    assert breached.split()[1] != "0", f"C, never acknowledged, has breached by now under the live policy: {breached}"


def test_events_whose_times_cannot_take_a_target_are_an_error_not_a_traceback(tmp_path: Path) -> None:
    config_dir, proposed = configs(tmp_path)
    late = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    first = STREAM[0]
    event = first.model_copy(update={"ticket": first.ticket.model_copy(update={"opened_at": late})})
    events = tmp_path / "events.jsonl"
    events.write_bytes(encode(event) + b"\n")
    out = io.StringIO()
    argv = ["sla", "replay", "--events", str(events), "--proposed", str(proposed), "--config-dir", str(config_dir)]
    assert main([*argv, "--no-progress"], out) == 1
    assert out.getvalue() == "error: a time in these events is past what dates can hold once a target is added to it\n"
