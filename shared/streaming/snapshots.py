"""Local snapshots of a changelog-backed table's partitions, so that a restarted worker reads the changelog from
the snapshot's offset instead of from the start (as Kafka Streams does with its checkpoint file and local store).

One file per changelog partition, ``<dir>/<changelog topic>-<partition>.snap``. A snapshot holds the partition's
keys and values as they were *committed* up to ``offset`` (the next changelog offset after them): a restart
loads them and then reads the changelog from ``offset`` on. Reading from an offset lower than the true one is
harmless (the records re-applied are values already held), so the offset written is never above it.

Layout of format 1, every integer big-endian:

    bytes 0-7   MAGIC
    frames      kind (1 byte), length (4 bytes), crc32 of the payload (4 bytes), payload (length bytes)
      H         the header, marshal of {"format", "topic", "partition", "offset", "taken_at"}, first
      C         a chunk, marshal of a flat list [key, value, key, value, ...] of bytes
      E         the end, marshal of the number of pairs written; a file without it is incomplete

A snapshot is written to ``.tmp`` beside its name, fsynced, and renamed over the old one: a crash mid-write
leaves the previous snapshot in place. A file that does not read back (damaged, truncated, another format)
raises SnapshotError naming the file and what is wrong; the caller then reads the whole changelog instead.
"""

from __future__ import annotations

import fcntl
import marshal
import os
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

MAGIC = b"TLSNAP\x00\x01"
FORMAT = 1
_FRAME = struct.Struct(">cII")
HEADER, CHUNK, END = b"H", b"C", b"E"
MAX_FRAME = 1 << 30  # a chunk is a few MB; a length beyond this is damage, not data


class SnapshotError(Exception):
    """A snapshot file that cannot be used, and why."""


@dataclass(frozen=True)
class SnapshotPolicy:
    """Where and how often a worker snapshots its tables (settings: TICKETLOOP_STATE_DIR and the two below)."""

    directory: Path
    interval_s: float = 120.0
    # Older snapshots are not used: a compacted changelog drops a tombstone after delete.retention.ms (24 h by
    # default), and a snapshot older than that could bring back a key deleted since.
    max_age_s: float = 6 * 3600.0
    chunk_pairs: int = 2_000  # keys per slice of the loop's time, and pairs per chunk in the file


@dataclass(frozen=True)
class SnapshotHeader:
    topic: str
    partition: int
    offset: int
    taken_at: float


def _frame(kind: bytes, payload: bytes) -> bytes:
    return _FRAME.pack(kind, len(payload), zlib.crc32(payload)) + payload


class SnapshotDir:
    """A worker's snapshot directory, held under an exclusive lock for as long as the worker runs (two workers
    writing one directory would overwrite each other's files)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock: IO[bytes] | None = None

    def lock(self) -> None:
        """Create and lock the directory; SnapshotError if another process holds it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        handle = (self.directory / "LOCK").open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise SnapshotError(f"{self.directory}: held by another worker (LOCK is locked)") from exc
        self._lock = handle

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file drops the lock
            self._lock = None

    def path(self, topic: str, partition: int) -> Path:
        return self.directory / f"{topic}-{partition}.snap"

    def writer(self, topic: str, partition: int, offset: int) -> SnapshotWriter:
        return SnapshotWriter(self.path(topic, partition), SnapshotHeader(topic, partition, offset, time.time()))


class SnapshotWriter:
    """Writes one partition's snapshot to a temporary file; ``commit`` makes it the partition's snapshot."""

    def __init__(self, path: Path, header: SnapshotHeader) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        self.pairs = 0
        self._file = self.tmp.open("wb")
        head = {
            "format": FORMAT,
            "topic": header.topic,
            "partition": header.partition,
            "offset": header.offset,
            "taken_at": header.taken_at,
        }
        self._file.write(MAGIC + _frame(HEADER, marshal.dumps(head)))

    def write(self, flat: list[bytes]) -> None:
        """A chunk: keys and values alternating."""
        if flat:
            self._file.write(_frame(CHUNK, marshal.dumps(flat)))
            self.pairs += len(flat) // 2

    def finish(self) -> None:
        """Write the end frame and fsync (slow on a big file: callers run this off the event loop)."""
        self._file.write(_frame(END, marshal.dumps(self.pairs)))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def commit(self) -> None:
        """Replace the partition's snapshot with this one (after ``finish``)."""
        os.replace(self.tmp, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def discard(self) -> None:
        self._file.close()
        self.tmp.unlink(missing_ok=True)


def _frames(path: Path, handle: IO[bytes]) -> Iterator[tuple[bytes, bytes]]:
    where = len(MAGIC)
    while True:
        head = handle.read(_FRAME.size)
        if not head:
            return
        if len(head) < _FRAME.size:
            raise SnapshotError(f"{path}: truncated frame header at byte {where}")
        kind, length, crc = _FRAME.unpack(head)
        if length > MAX_FRAME:
            raise SnapshotError(f"{path}: frame at byte {where} claims {length} bytes")
        payload = handle.read(length)
        if len(payload) < length:
            raise SnapshotError(f"{path}: truncated frame at byte {where} ({len(payload)} of {length} bytes)")
        if zlib.crc32(payload) != crc:
            raise SnapshotError(f"{path}: checksum mismatch in the frame at byte {where}")
        yield kind, payload
        where += _FRAME.size + length


def _loads(path: Path, payload: bytes, what: str) -> Any:
    try:
        return marshal.loads(payload)  # noqa: S302 - our own files (checksummed), in the worker's own directory
    except (EOFError, ValueError, TypeError) as exc:
        raise SnapshotError(f"{path}: {what} does not decode: {exc}") from exc


def read_header(path: Path, handle: IO[bytes]) -> tuple[SnapshotHeader, Iterator[tuple[bytes, bytes]]]:
    """The snapshot's header, and the frames after it."""
    if handle.read(len(MAGIC)) != MAGIC:
        raise SnapshotError(f"{path}: not a ticketloop snapshot (bad magic bytes)")
    frames = _frames(path, handle)
    first = next(frames, None)
    if first is None or first[0] != HEADER:
        raise SnapshotError(f"{path}: the header frame is missing")
    head = _loads(path, first[1], "the header")
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise SnapshotError(f"{path}: format {head.get('format') if isinstance(head, dict) else head!r}, not {FORMAT}")
    try:
        header = SnapshotHeader(
            str(head["topic"]), int(head["partition"]), int(head["offset"]), float(head["taken_at"])
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"{path}: header field {exc} missing or wrong") from exc
    return header, frames


def chunks(path: Path, frames: Iterator[tuple[bytes, bytes]]) -> Iterator[list[bytes]]:
    """Each chunk's flat list of keys and values, in order; SnapshotError at the first fault (the caller drops
    what it applied of this snapshot)."""
    pairs = 0
    for kind, payload in frames:
        if kind == END:
            if _loads(path, payload, "the end frame") != pairs:
                raise SnapshotError(f"{path}: the end frame counts a different number of pairs than read ({pairs})")
            return
        if kind != CHUNK:
            raise SnapshotError(f"{path}: unknown frame kind {kind!r}")
        flat = _loads(path, payload, "a chunk")
        if not isinstance(flat, list) or len(flat) % 2:
            raise SnapshotError(f"{path}: a chunk is not a list of key and value pairs")
        pairs += len(flat) // 2
        yield flat
    raise SnapshotError(f"{path}: incomplete (no end frame after {pairs} pairs)")


def load_snapshot(
    snapshots: SnapshotDir, policy: SnapshotPolicy, topic: str, partition: int, first: int, end: int
) -> tuple[dict[bytes, bytes], int] | None:
    """The partition's snapshot: (its keys and values, the changelog offset to read on from), None when there
    is none; raises SnapshotError saying why one is not usable (damaged, another topic's, outside the
    changelog, too old)."""
    path = snapshots.path(topic, partition)
    if not path.exists():
        return None
    data: dict[bytes, bytes] = {}
    try:
        with path.open("rb") as handle:
            header, frames = read_header(path, handle)
            if (header.topic, header.partition) != (topic, partition):
                raise SnapshotError(f"{path}: holds {header.topic} partition {header.partition}")
            if not first <= header.offset <= end:
                raise SnapshotError(
                    f"{path}: offset {header.offset} is outside the changelog's {first}..{end} "
                    "(the topic was recreated or truncated)"
                )
            age = time.time() - header.taken_at
            if age > policy.max_age_s:
                raise SnapshotError(f"{path}: taken {age:.0f} s ago, over the {policy.max_age_s:.0f} s limit")
            for flat in chunks(path, frames):
                values = iter(flat)
                data.update(zip(values, values, strict=True))
    except OSError as exc:
        raise SnapshotError(f"{path}: {exc.strerror or exc}") from exc
    return data, header.offset


def write_snapshot(
    snapshots: SnapshotDir, topic: str, partition: int, offset: int, data: dict[bytes, bytes], chunk_pairs: int
) -> None:
    """Write ``data`` (committed up to changelog ``offset``) as the partition's snapshot: to a temporary file,
    fsynced, then renamed over the old one. Slow on a big table: callers run it off the event loop, on a copy."""
    writer = snapshots.writer(topic, partition, offset)
    try:
        flat: list[bytes] = []
        for key, value in data.items():
            flat.append(key)
            flat.append(value)
            if len(flat) >= 2 * chunk_pairs:
                writer.write(flat)
                flat = []
        writer.write(flat)
        writer.finish()
    except BaseException:
        writer.discard()
        raise
    writer.commit()
