"""shared/streaming/snapshots.py: a snapshot file reads back exactly as written; every kind of damage is refused with the file
named; a half-written snapshot never replaces the last good one; one worker per directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared.streaming.snapshots import (
    MAGIC,
    SnapshotDir,
    SnapshotError,
    SnapshotHeader,
    SnapshotPolicy,
    chunks,
    load_snapshot,
    read_header,
    write_snapshot,
)


def write(directory: Path, flats: list[list[bytes]], offset: int = 42) -> Path:
    snapshots = SnapshotDir(directory)
    writer = snapshots.writer("app-clocks-changelog", 3, offset)
    for flat in flats:
        writer.write(flat)
    writer.finish()
    writer.commit()
    return writer.path


def read(path: Path) -> tuple[SnapshotHeader, list[list[bytes]]]:
    with path.open("rb") as handle:
        header, frames = read_header(path, handle)
        return header, list(chunks(path, frames))


def test_a_snapshot_reads_back_as_written(tmp_path: Path) -> None:
    flats = [[b"a", b"1", b"b", b"\x00" * 300], [b"c", b""]]
    path = write(tmp_path, flats)
    header, read_back = read(path)
    assert (header.topic, header.partition, header.offset) == ("app-clocks-changelog", 3, 42)
    assert read_back == flats
    assert path.name == "app-clocks-changelog-3.snap"
    assert not path.with_name(path.name + ".tmp").exists()


def test_an_empty_partition_has_a_snapshot_too(tmp_path: Path) -> None:
    header, read_back = read(write(tmp_path, [], offset=0))
    assert header.offset == 0
    assert read_back == []


def _damaged(tmp_path: Path, damage: str) -> Path:
    path = write(tmp_path, [[b"k%d" % n, b"v" * 50] for n in range(3)])
    raw = bytearray(path.read_bytes())
    if damage == "magic":
        raw[0:4] = b"JUNK"
    elif damage == "flipped":
        raw[-30] ^= 0xFF
    elif damage == "truncated":
        raw = raw[:-20]
    elif damage == "no end":
        raw = raw[: raw.rfind(b"E\x00\x00\x00")]
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("magic", "not a ticketloop snapshot"),
        ("flipped", "checksum mismatch"),
        ("truncated", "truncated"),
        ("no end", "incomplete"),
    ],
)
def test_a_damaged_snapshot_is_refused_naming_the_file(tmp_path: Path, damage: str, says: str) -> None:
    path = _damaged(tmp_path, damage)
    with pytest.raises(SnapshotError, match=says) as caught:
        read(path)
    assert str(path) in str(caught.value)


def test_an_unfinished_snapshot_leaves_the_last_one_in_place(tmp_path: Path) -> None:
    path = write(tmp_path, [[b"a", b"old"]])
    writer = SnapshotDir(tmp_path).writer("app-clocks-changelog", 3, 99)
    writer.write([b"a", b"new"])  # the worker dies here, before finish and commit
    assert read(path)[1] == [[b"a", b"old"]]
    writer.discard()
    assert not writer.tmp.exists()
    assert read(path)[0].offset == 42


def test_a_snapshot_directory_serves_one_worker(tmp_path: Path) -> None:
    mine = SnapshotDir(tmp_path / "state")
    mine.lock()
    other = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from shared.streaming.snapshots import SnapshotDir\n"
            "try:\n SnapshotDir(Path(sys.argv[1])).lock()\nexcept Exception as e:\n print(e); sys.exit(3)",
            str(tmp_path / "state"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert other.returncode == 3, other.stderr
    assert "held by another worker" in other.stdout
    assert str(tmp_path / "state") in other.stdout
    mine.release()
    again = SnapshotDir(tmp_path / "state")
    again.lock()
    again.release()


def test_a_file_that_is_not_a_snapshot_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.snap"
    path.write_bytes(MAGIC)
    with pytest.raises(SnapshotError, match="header frame is missing"):
        read(path)


def test_a_table_written_whole_loads_back_with_its_offset_and_what_is_unusable_says_why(tmp_path: Path) -> None:
    snapshots, policy = SnapshotDir(tmp_path), SnapshotPolicy(tmp_path, chunk_pairs=2)
    data = {f"k{i}".encode(): f"v{i}".encode() * i for i in range(5)}
    write_snapshot(snapshots, "g-clocks-changelog", 1, 40, data, policy.chunk_pairs)
    assert load_snapshot(snapshots, policy, "g-clocks-changelog", 1, 0, 50) == (data, 40)
    assert load_snapshot(snapshots, policy, "g-clocks-changelog", 2, 0, 50) is None, "none for that partition"
    with pytest.raises(SnapshotError, match=r"offset 40 is outside the changelog's 45\.\.50"):
        load_snapshot(snapshots, policy, "g-clocks-changelog", 1, 45, 50)
    with pytest.raises(SnapshotError, match="over the 0 s limit"):
        load_snapshot(snapshots, SnapshotPolicy(tmp_path, max_age_s=0.0), "g-clocks-changelog", 1, 0, 50)
    path = snapshots.path("g-clocks-changelog", 1)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(SnapshotError, match=str(path)):
        load_snapshot(snapshots, policy, "g-clocks-changelog", 1, 0, 50)
