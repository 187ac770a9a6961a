"""Derived pictures (thumbnails, video frames) made on demand and cached on disk by a key.

Invariants: the bytes of a key are made at most once, however many requests ask at once: a
per-key lock within the process and an exclusive ``flock`` on a per-key lock file across
server processes, with the cache looked at again under the lock. A picture appears in the
cache by an atomic rename, so a reader never sees half a file. A key names only immutable
inputs (a blob's sha256 and numbers), so a cached file never goes stale and may be served
as immutable. The cache holds only derived bytes: deleting it is safe.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from annostream.store import Store

_NAME = re.compile(r"^[0-9a-f]{64}(-[a-z0-9]+)+\.[a-z]+$")


@dataclass(frozen=True)
class Picture:
    """A cached derived picture: where it is, its type and ETag, and whether this call made it."""

    path: Path
    media_type: str
    etag: str
    made: bool

    def read(self) -> bytes:
        return self.path.read_bytes()


class _KeyLocks:
    """One lock per key, alive while someone holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


_LOCKS = _KeyLocks()
_FOLDER_GUARD = threading.Lock()


def folder(store: Store) -> Path:
    """The store's cache folder of derived pictures (a fresh temporary one when none is set)."""
    with _FOLDER_GUARD:
        if store.derived_dir is None:
            store.derived_dir = Path(tempfile.mkdtemp(prefix="annostream-derived-"))
        store.derived_dir.mkdir(parents=True, exist_ok=True)
        return store.derived_dir


def cached(cache_dir: Path, name: str, make: Callable[[], bytes]) -> tuple[Path, bool]:
    """The path of the cached file ``name`` (``<sha256>-<part>[-<part>...].<ext>``), made by
    ``make`` if it is not there yet, and whether this call made it."""
    if not _NAME.match(name):
        raise ValueError(f"not a derived picture's name: {name!r}")
    path = cache_dir / name[:2] / name
    if path.is_file():
        return path, False
    path.parent.mkdir(parents=True, exist_ok=True)
    with _LOCKS.hold(str(path)), open(path.with_suffix(".lock"), "a+b") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if path.is_file():
            return path, False
        data = make()
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path, True
