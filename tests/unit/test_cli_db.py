"""ticketloop db upgrade / current."""

from __future__ import annotations

import io
from pathlib import Path

from services.cli import main as cli
from shared.store import schema


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return cli(list(argv), out), out.getvalue().strip()


def test_upgrade_then_current(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    (tmp_path / "x.db").touch()
    assert run("db", "current", "--database-url", url) == (0, f"none (newest: {schema.head()})")
    assert run("db", "upgrade", "--database-url", url) == (0, f"the schema is at revision {schema.head()}, the newest")
    assert run("db", "current", "--database-url", url) == (0, f"{schema.head()} (newest: {schema.head()})")


def test_an_unreachable_database_is_an_error_without_its_url() -> None:
    url = "postgresql://ticketloop:pg-s3cret-pw@127.0.0.1:9/ticketloop"  # port 9: nothing listens
    code, text = run("db", "current", "--database-url", url)
    assert code == 1 and text.startswith("error: OperationalError: connection failed: "), text
    assert "Connection refused" in text and "pg-s3cret-pw" not in text
    code, text = run("db", "current", "--database-url", "postgresql://u:pg-s3cret-pw@h:notaport/x")
    assert code == 1 and "pg-s3cret-pw" not in text, text


def test_a_file_that_cannot_be_made_or_a_missing_driver_is_an_error_without_a_traceback(tmp_path: Path) -> None:
    code, text = run("db", "upgrade", "--database-url", f"sqlite:///{tmp_path / 'no' / 'dir' / 'x.db'}")
    assert code == 1 and text.startswith("error: "), text
    code, text = run("db", "current", "--database-url", "mysql://u:my-s3cret@127.0.0.1:9/x")
    assert (code, text) == (1, "error: no driver here for this database URL (ModuleNotFoundError)")


def test_current_of_a_sqlite_file_that_is_not_there_says_so_and_makes_none(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    code, text = run("db", "current", "--database-url", f"sqlite:///{missing}")
    assert (code, text) == (1, f"error: no database at {missing} (`ticketloop db upgrade` makes one)")
    assert not missing.exists()
