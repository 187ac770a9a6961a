"""A least-recently-used cache bounded by the real byte size of what it holds.

Counting entries would let one large image blow the budget; the cache charges each entry
its byte size (blob bytes plus an estimate of the metadata) and evicts until it fits.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


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
