"""Numbers that intake's worker processes share: fixed slots of one struct format in a file they all map.

The rate limits' arrival times (services/intake/limits.py) and each worker's open connections
(services/intake/workers.py) are kept this way. The first process to open the file fills every slot; ``lock``
(``flock``) is released by the kernel if its holder dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import struct
from collections.abc import Iterator
from pathlib import Path


class MappedSlots:
    """``count`` slots of ``fmt`` (a struct format) in the file at ``path``, each ``fill`` until written."""

    def __init__(self, path: Path, fmt: str, count: int, fill: float) -> None:
        self.slot = struct.Struct(fmt)
        size = max(1, count) * self.slot.size
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        with self.lock():
            if os.fstat(self._fd).st_size == 0:  # the first process to open it
                os.write(self._fd, self.slot.pack(fill) * max(1, count))
        self._map = mmap.mmap(self._fd, size)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Held by one process at a time (a read-decide-write of a slot another process may write too)."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def get(self, index: int) -> float:
        found: float = self.slot.unpack_from(self._map, index * self.slot.size)[0]
        return found

    def set(self, index: int, value: float) -> None:
        self.slot.pack_into(self._map, index * self.slot.size, value)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)
