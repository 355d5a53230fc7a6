"""The whole-run check for secrets in service logs (tests/support/secrets.py) finds what it looks for."""

from __future__ import annotations

from pathlib import Path

from tests.support.secrets import leaks, service_logs


def test_a_secret_in_a_service_log_is_found_and_other_files_are_not_read(tmp_path: Path) -> None:
    (tmp_path / "stack" / "logs").mkdir(parents=True)
    (tmp_path / "stack" / "logs" / "notifier.log").write_text('{"event": "delivery", "url": "x?key=s3cret-abc"}\n')
    (tmp_path / "stack" / "logs" / "router.log").write_text('{"event": "ticket_changed"}\n')
    (tmp_path / "stack" / "sink.log").write_text("POST /robot/send?key=s3cret-abc\n")  # a sink's record, not a service
    logs = service_logs(tmp_path)
    assert [p.name for p in logs] == ["notifier.log", "router.log"]
    assert leaks(logs, {"wecom key": "s3cret-abc", "other": "not-there"}) == [
        ("wecom key", str(tmp_path / "stack" / "logs" / "notifier.log"))
    ]
