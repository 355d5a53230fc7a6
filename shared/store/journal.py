"""The notifier's journal of finished sends, beside a SQLite database file.

A lane sends again only once the outcome of its last send is durable (a crash then repeats at most that one
send). Written to the database, that meant a commit per round of answers, and every lane of an event waited for
the slowest one's answer and the commit before its next send: in a paced stream the lanes moved in lockstep and
a hiccup anywhere became a queue (bench/notify_fanout). The journal makes the outcome durable with one
``write()`` to a local file the moment the answer comes, as durable as SQLite's own log with
``synchronous=NORMAL`` (it survives the process, not the machine), and the database gets the same writes in
rounds a few milliseconds apart. A journal file goes once everything in it is in the database.

After a crash, the next start reads what a dead process journaled and writes it to the database before anything
is loaded or sent (``recover``). A live process holds an exclusive ``flock`` on each of its files, so another
notifier on the same database never takes them. Replaying a finish twice changes nothing: its outbox rows are
gone and a ``sent`` record is never overwritten.

Lines: one JSON object per finish, ``{"ids": [...], "records": [...]}``; a line cut short by the crash (no
newline) is no finish and is skipped.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

import orjson
from pydantic import ValidationError
from sqlalchemy import URL, Engine

from shared.events import Delivery
from shared.infra.logging import get_logger
from shared.store.outbox import Finish

log = get_logger(__name__)
SUFFIX = ".journal"


def journal_dir(url: URL) -> Path | None:
    """Where the journal of a database lives: beside a SQLite database file (``<file>.journal``); None for
    another database (a notifier may run on any host there) or a SQLite database in memory."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    path = Path(url.database)
    return path.with_name(path.name + SUFFIX)


def journal_for(engine: Engine) -> Journal | None:
    """The notifier's journal for this database (None: none, see ``journal_dir``)."""
    directory = journal_dir(engine.url)
    return Journal(directory) if directory is not None else None


def encode(op: Finish) -> bytes:
    """One journal line."""
    return orjson.dumps({"ids": list(op.ids), "records": [r.model_dump(mode="json") for r in op.records]}) + b"\n"


def decode(data: bytes) -> list[Finish]:
    """The finishes of a journal file's bytes: whole lines only (a last line without its newline was cut short
    by the crash); a line that is not a finish is skipped and logged (by its number, never its content)."""
    found: list[Finish] = []
    lines = data.split(b"\n")
    for number, line in enumerate(lines[:-1], start=1):  # the part after the last newline is cut short or empty
        if not line.strip():
            continue
        try:
            raw = orjson.loads(line)
            ids = [str(i) for i in raw["ids"]]
            records = [Delivery.model_validate(r) for r in raw["records"]]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValidationError) as exc:
            log.warning("journal_line_skipped", line=number, error=type(exc).__name__)
            continue
        found.append(Finish(ids, records))
    return found


def _delete(path: Path, fd: int) -> None:
    """A journal file whose finishes are all in the database: gone, its descriptor (and lock) released."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    os.close(fd)


def _locked(fd: int) -> bool:
    """Take ``fd``'s exclusive lock if nobody holds it (a live notifier holds its own files')."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class Journal:
    """This process's journal files in ``directory``: one generation at a time is appended to; a generation's
    file is deleted once every finish in it (and before it) is in the database."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.token = secrets.token_hex(6)
        """Names this process's files (another process's files are never touched while it lives)."""
        self.generation = 0
        self.appended = 0
        """Finishes journaled so far (a round that took them all lets the current file go too)."""
        self._fd: int | None = None
        """The current generation's file (None: none yet since the last one was sealed)."""
        self._open: dict[int, int] = {}
        """Generation → its file's descriptor, held (and locked) until the file is deleted."""

    def _path(self, generation: int) -> Path:
        return self.directory / f"{self.token}-{generation:010d}{SUFFIX}"

    def append(self, op: Finish) -> int:
        """Journal a finish (one ``write``); returns its generation."""
        if self._fd is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.generation += 1
            fd = os.open(self._path(self.generation), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._fd = self._open[self.generation] = fd
        try:
            os.write(self._fd, encode(op))
        except OSError:
            self._fd = None  # what it wrote may be a torn line: the next finish starts a file of its own
            raise
        self.appended += 1
        return self.generation

    def applied(self, generation: int, *, all_of_it: bool) -> None:
        """Every finish journaled before the last one of ``generation`` is in the database (``all_of_it``: that
        one and everything after it too): the files that hold nothing else go."""
        if all_of_it and generation == self.generation:
            self._fd = None  # sealed: the next finish starts a new file
        done = [g for g in self._open if g < generation or (all_of_it and g <= generation)]
        for g in done:
            _delete(self._path(g), self._open.pop(g))

    def recover(self) -> list[tuple[Path, int, list[Finish]]]:
        """The journal files of processes that are gone (their lock free), each with its descriptor (held and
        locked: ``forget`` deletes and closes it once its finishes are in the database) and its finishes."""
        if not self.directory.is_dir():
            return []
        found: list[tuple[Path, int, list[Finish]]] = []
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # another notifier starting up took it
            if not _locked(fd):
                os.close(fd)
                continue
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read()
            found.append((path, fd, decode(data)))
        return found

    @staticmethod
    def forget(files: Iterable[tuple[Path, int, list[Finish]]]) -> None:
        """Delete recovered files once their finishes are in the database."""
        for path, fd, _ in files:
            _delete(path, fd)

    @staticmethod
    def release(files: Iterable[tuple[Path, int, list[Finish]]]) -> None:
        """Let recovered files be (their finishes could not be written): the next start recovers them."""
        for _, fd, _ in files:
            os.close(fd)

    def close(self) -> None:
        """Release this process's files; those not deleted (finishes not yet in the database) stay for the next
        start to recover."""
        for fd in self._open.values():
            os.close(fd)
        self._open.clear()
        self._fd = None
