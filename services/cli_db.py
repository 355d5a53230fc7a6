"""``ticketloop db upgrade`` and ``ticketloop db current``: the database schema's revision (shared/store/schema.py),
for operators who migrate as a step of their own before a rollout; the services also migrate as they start."""

from __future__ import annotations

import argparse
import os
from typing import Any, TextIO

from sqlalchemy.exc import SQLAlchemyError

from shared.infra.settings import DEFAULT_DATABASE_URL
from shared.store import db, schema


def database_url(given: str | None) -> str:
    """--database-url, else $DATABASE_URL (or $TICKETLOOP_DATABASE_URL), else the local default."""
    return given or os.environ.get("DATABASE_URL") or os.environ.get("TICKETLOOP_DATABASE_URL") or DEFAULT_DATABASE_URL


def add_db_commands(sub: Any) -> None:
    area = sub.add_parser("db", help="the database schema").add_subparsers(dest="action", required=True)
    for name, text in (
        ("upgrade", "bring the schema to the newest revision (made when the database is empty)"),
        ("current", "the revision the database is at, and the newest"),
    ):
        command = area.add_parser(name, help=text)
        command.add_argument("--database-url", default=None, help=f"default: $DATABASE_URL or {DEFAULT_DATABASE_URL}")


def db_command(args: argparse.Namespace, out: TextIO) -> int:
    engine = None
    url = database_url(args.database_url)
    if args.action == "current" and (missing := db.missing_sqlite_file(url)) is not None:
        print(f"error: no database at {missing} (`ticketloop db upgrade` makes one)", file=out)
        return 1
    try:  # a URL SQLAlchemy cannot read is an error whose text is the URL: inside, with the others
        engine = db.make_engine(url)
        if args.action == "upgrade":
            at = schema.upgrade(engine)
            newest = "the newest" if at == schema.head() else f"newer than this release's newest, {schema.head()}"
            print(f"the schema is at revision {at}, {newest}", file=out)
        else:
            with engine.connect() as conn:
                recorded = schema.current(conn)
            print(f"{recorded or 'none'} (newest: {schema.head()})", file=out)
    except (SQLAlchemyError, ValueError, ImportError) as exc:  # its text can carry the URL, and its password
        print(f"error: {db.database_problem(exc, url)}", file=out)
        return 1
    except OSError as exc:  # SQLite's file or its migration lock beside it
        print(f"error: cannot open the database file: {exc.strerror or type(exc).__name__}", file=out)
        return 1
    finally:
        if engine is not None:
            engine.dispose()
    return 0
