"""Client caches, both bounded by the real byte size of what they hold.

- ``ByteLRU``: in memory, per process. Counting entries would let one large image blow the
  budget; it charges each entry its byte size (blob bytes plus an estimate of the metadata)
  and evicts until it fits.
- ``DiskBlobCache``: blobs on local disk keyed by sha256. Blobs are immutable, so an entry
  never goes stale; every read is checked against its name, so a damaged file is a miss.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from annostream.paths import is_sha256


class ByteLRU:
    """Thread-safe LRU with a byte budget. ``nbytes`` never exceeds ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.peak_bytes = 0
        self.evictions = 0
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __getstate__(self) -> dict[str, Any]:
        # A copy shipped to another process (DataLoader workers) starts empty.
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["max_bytes"])  # type: ignore[misc]

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: Hashable, value: Any, size: int) -> None:
        """Insert ``value`` charged ``size`` bytes; values larger than the budget are skipped."""
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            while self._entries and self.nbytes + size > self.max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self.nbytes -= evicted
                self.evictions += 1
            self._entries[key] = (value, size)
            self.nbytes += size
            self.peak_bytes = max(self.peak_bytes, self.nbytes)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.nbytes = 0


class DiskBlobCache:
    """Blobs in a local folder, at most ``max_bytes`` of them, oldest written evicted first.

    Safe for several processes (DataLoader workers) on one folder: writes go through a
    temporary file and an atomic rename, and a file another process evicted is a miss.
    """

    def __init__(self, root: str | os.PathLike[str], max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._sizes: dict[str, int] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"root": str(self.root), "max_bytes": self.max_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["root"], state["max_bytes"])  # type: ignore[misc]

    def _path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def _index(self) -> dict[str, int]:
        """sha -> size of what is on disk, oldest first (read once per process)."""
        if self._sizes is None:
            self.root.mkdir(parents=True, exist_ok=True)
            entries = [
                (p.stat().st_mtime, p.name, p.stat().st_size)
                for p in self.root.glob("??/*")
                if len(p.name) == 64
            ]
            self._sizes = {name: size for _, name, size in sorted(entries)}
        return self._sizes

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(self._index().values())

    def get(self, sha256: str) -> bytes | None:
        if not is_sha256(sha256):  # a name from the wire never becomes a path outside the cache
            self.misses += 1
            return None
        try:
            data = self._path(sha256).read_bytes()
        except FileNotFoundError:
            self.misses += 1
            return None
        if hashlib.sha256(data).hexdigest() != sha256:
            self._path(sha256).unlink(missing_ok=True)
            self.misses += 1
            return None
        self.hits += 1
        return data

    def put(self, sha256: str, data: bytes) -> None:
        """Keep ``data`` (whose sha256 is ``sha256``); blobs larger than the budget are skipped."""
        if len(data) > self.max_bytes or not is_sha256(sha256):
            return
        with self._lock:
            sizes = self._index()
            if sha256 in sizes:
                return
            while sizes and sum(sizes.values()) + len(data) > self.max_bytes:
                oldest = next(iter(sizes))
                del sizes[oldest]
                self._path(oldest).unlink(missing_ok=True)
            path = self._path(sha256)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
            sizes[sha256] = len(data)
