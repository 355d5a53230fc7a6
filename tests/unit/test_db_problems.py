"""What the command line says of a database: a SQLite file that is not there, and a driver's error without the
URL or its password."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy.exc import ArgumentError, OperationalError

from shared.store.db import database_problem, missing_sqlite_file


def test_only_a_sqlite_file_that_is_not_there_is_missing(tmp_path: Path) -> None:
    (tmp_path / "here.db").touch()
    assert missing_sqlite_file(f"sqlite:///{tmp_path / 'gone.db'}") == tmp_path / "gone.db"
    for url in (
        f"sqlite:///{tmp_path / 'here.db'}",
        "sqlite://",
        "sqlite:///:memory:",
        "postgresql://u:p@h/db",
        "not a url",
        "postgresql://u:p@[::1/x",
    ):
        assert missing_sqlite_file(url) is None, url


def test_a_drivers_error_is_its_first_line_without_the_url_or_its_password() -> None:
    url = "postgresql://ops:pa55-w0rd@db.example:5432/tl"
    said = f'connection to {url} failed: password "pa55-w0rd" refused\nDETAIL: more'
    exc = OperationalError("SELECT secret_statement", {}, sqlite3.OperationalError(said))
    assert database_problem(exc, url) == (
        'OperationalError: connection to <the database URL> failed: password "***" refused'
    )
    assert database_problem(ArgumentError(f"Could not parse {url}"), url) == "not a database URL (ArgumentError)"
    assert database_problem(ModuleNotFoundError("psycopg"), url) == (
        "no driver here for this database URL (ModuleNotFoundError)"
    )
