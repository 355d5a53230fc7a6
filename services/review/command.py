"""``ticketloop review``: the quarterly joint review of implementation and operations as one HTML file.

    ticketloop review --quarter 2026Q4 [--customer acme] [--project webshop] [--out review.html]
                      [--proposed sla-next.yaml --events tickets.jsonl | --kafka HOST:PORT]

Reads the SQL read model (``DATABASE_URL``, or ``--database-url``) and the live sla.yaml (which clocks each policy
runs), writes the report (default ``review-<quarter>[-<customer>][-<project>].html``) and prints its path. With
``--proposed``, the report also says what that sla.yaml would have done to the recorded tickets up to the
quarter's end (``ticketloop sla replay``'s text). A progress bar on stderr for long ranges (``--no-progress``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm

from services.cli_db import database_url
from services.review.figures import QuarterError, quarter_bounds, quarter_name, review
from services.review.load import Scope, load_quarter
from services.review.report import render
from services.sla.policy import SlaConfig
from services.sla.replay_io import ReplayInputError, read_events, read_topic, replay_report
from shared.events import TicketEvent
from shared.infra.config import ConfigError, load_yaml_model
from shared.store import db
from shared.streaming.reader import TopicReadError
from shared.streaming.topics import Topics


def add_review_command(sub: Any, _aware: Callable[[str], datetime]) -> None:
    p = sub.add_parser("review", help="the quarterly joint review as one HTML file")
    p.add_argument("--quarter", required=True, help="e.g. 2026Q4")
    p.add_argument("--customer", default=None)
    p.add_argument("--project", default=None)
    p.add_argument("--out", type=Path, default=None, help="the HTML file (default: review-<quarter>....html)")
    p.add_argument("--database-url", default=None, help="default: $DATABASE_URL or the local SQLite file")
    p.add_argument("--config-dir", type=Path, default=None, help="the live sla.yaml's directory")
    p.add_argument("--proposed", type=Path, default=None, help="a changed sla.yaml to replay over the quarter")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--events", type=Path, help="with --proposed: ticket events, one JSON object per line")
    source.add_argument("--kafka", metavar="BOOTSTRAP", help="with --proposed: read the tickets topic")
    p.add_argument("--topic-prefix", default=os.environ.get("TICKETLOOP_TOPIC_PREFIX", "ticketloop."))
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def default_out(quarter: str, scope: Scope) -> Path:
    """``review-2026Q4-acme-webshop.html`` in the working directory: each part as a file name may hold it (no
    path separator or control character, at most 60 characters)."""
    parts = ["review", quarter.strip().upper(), scope.customer or "", scope.project or ""]
    return Path("-".join(_file_part(p) for p in parts if p.strip()) + ".html")


def _file_part(text: str) -> str:
    return re.sub(r"[\x00-\x1f/\\]+", "_", text.strip())[:60]


NO_DATABASE_HINT = "the services make it when they first start; give their --database-url"


def review_command(args: argparse.Namespace, config_dir: Path, out: TextIO) -> int:
    try:
        quarter = quarter_name(args.quarter)
        start, end = quarter_bounds(quarter)
        live = load_yaml_model(config_dir / "sla.yaml", SlaConfig)
        recorded = _recorded(args)
    except (QuarterError, ConfigError, TopicReadError) as exc:
        print(f"error: {exc}", file=out)
        return 1
    scope = Scope(args.customer, args.project)
    url = database_url(args.database_url)
    if (missing := db.missing_sqlite_file(url)) is not None:
        print(f"error: no database at {missing}: {NO_DATABASE_HINT}", file=out)
        return 1
    try:
        engine = db.make_engine(url)
    except (SQLAlchemyError, ValueError, ImportError) as exc:  # its text can be the URL, with its password
        print(f"error: not a database URL, or no driver for it here ({type(exc).__name__})", file=out)
        return 1
    try:
        with tqdm(desc="reading tickets", unit="ticket", disable=args.no_progress, file=sys.stderr) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            tickets, entries, answers = load_quarter(engine, start, end, scope, progress)
    except SQLAlchemyError as exc:
        print(f"error: the read model could not be read: {db.database_problem(exc, url)}", file=out)
        return 1
    finally:
        engine.dispose()
    replay_text = None
    if recorded is not None:
        proposed, events = recorded
        ids = {t.ticket_id for t in tickets}  # the quarter's tickets in scope, nothing else
        mine = [ev for ev in events if ev.ticket.ticket_id in ids]
        horizon = min(end, datetime.now(UTC))
        replay_text = replay_report(mine, live, proposed, args.proposed, horizon, not args.no_progress)
    result = review(quarter, scope.describe(), tickets, entries, answers, live)
    path = args.out or default_out(quarter, scope)
    try:
        path.write_text(render(result, replay_text), encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot write {path}: {exc.strerror or type(exc).__name__}", file=out)
        return 1
    print(f"review {result.quarter} ({scope.describe()}): {result.tickets} tickets; written to {path}", file=out)
    return 0


def _recorded(args: argparse.Namespace) -> tuple[SlaConfig, list[TicketEvent]] | None:
    """The proposed sla.yaml and the recorded ticket events to replay it on (None: no --proposed)."""
    if args.proposed is None:
        if args.events is not None or args.kafka is not None:
            raise ReplayInputError("--events and --kafka are what --proposed replays: give the changed sla.yaml too")
        return None
    proposed = load_yaml_model(args.proposed, SlaConfig)
    if args.events is not None:
        return proposed, read_events(args.events)
    if args.kafka is not None:
        events = asyncio.run(read_topic(args.kafka, Topics(args.topic_prefix).tickets.name, not args.no_progress))
        return proposed, events
    raise ReplayInputError("--proposed needs the recorded ticket events: --events FILE or --kafka BOOTSTRAP")
