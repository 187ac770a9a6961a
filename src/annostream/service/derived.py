"""Derived pictures (thumbnails, video frames) made on demand and cached on disk by a key.

Invariants: while a key's picture is cached it is made at most once, however many requests
ask at once: a per-key lock within the process and an exclusive ``flock`` on a per-key lock
file across server processes, with the cache looked at again under the lock. The lock file
is removed by its holder before it lets go, and a waiter that then finds its file unlinked
locks afresh, so no lock file stays behind. A picture
appears in the cache by an atomic rename, so a reader never sees half a file; callers get
its bytes, never a path that could vanish under them. A key names only immutable inputs (a
blob's sha256 and numbers), so a cached picture never goes stale and may be served as
immutable. The cache holds only derived bytes and is bounded: every ``SWEEP_EVERY`` pictures
a process makes, the oldest are removed until the folder is under ``MAX_BYTES`` (a caller who
asks for every frame of every video fills no disk); a removed picture is made again when
asked for.
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

from annostream.limits import LIMITS
from annostream.store import Store

_NAME = re.compile(r"^[0-9a-f]{64}(-[a-z0-9]+)+\.[a-z]+$")
MAX_BYTES = LIMITS.derived_cache_bytes
SWEEP_EVERY = 64
KEEP = 0.75  # a sweep leaves the folder at this share of MAX_BYTES


@dataclass(frozen=True)
class Picture:
    """A derived picture: its bytes, type and ETag, and whether this call made it."""

    data: bytes
    media_type: str
    etag: str
    made: bool

    def read(self) -> bytes:
        return self.data


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


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` across processes; the file is gone once released."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break  # still the file at ``path``: not unlinked by the holder we waited on
        except FileNotFoundError:
            pass  # unlinked by that holder: lock the next file
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


_GUARD = threading.Lock()
_made_since_sweep = 0


def folder(store: Store) -> Path:
    """The store's cache folder of derived pictures (a fresh temporary one when none is set)."""
    with _GUARD:
        if store.derived_dir is None:
            store.derived_dir = Path(tempfile.mkdtemp(prefix="annostream-derived-"))
        store.derived_dir.mkdir(parents=True, exist_ok=True)
        return store.derived_dir


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def cached(cache_dir: Path, name: str, make: Callable[[], bytes]) -> tuple[bytes, bool]:
    """The bytes of the cached picture ``name`` (``<sha256>-<part>[-<part>...].<ext>``), made
    by ``make`` if it is not there, and whether this call made them."""
    if not _NAME.match(name):
        raise ValueError(f"not a derived picture's name: {name!r}")
    path = cache_dir / name[:2] / name
    data = _read(path)
    if data is not None:
        return data, False
    path.parent.mkdir(parents=True, exist_ok=True)
    with _LOCKS.hold(str(path)), _file_lock(path.with_suffix(".lock")):
        data = _read(path)
        if data is not None:
            return data, False
        data = make()
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    _count_made(cache_dir)
    return data, True


def _count_made(cache_dir: Path) -> None:
    global _made_since_sweep
    with _GUARD:
        _made_since_sweep += 1
        due = _made_since_sweep >= SWEEP_EVERY
        if due:
            _made_since_sweep = 0
    if due:
        sweep(cache_dir, MAX_BYTES)


def sweep(cache_dir: Path, max_bytes: int) -> int:
    """Remove the oldest pictures while the folder holds more than
    ``max_bytes``, down to ``KEEP`` of it; the number of bytes removed."""
    pictures = []
    for entry in cache_dir.glob("??/*.jpg"):
        with contextlib.suppress(FileNotFoundError):
            st = entry.stat()
            pictures.append((st.st_mtime, st.st_size, entry))
    total = sum(size for _, size, _ in pictures)
    if total <= max_bytes:
        return 0
    removed = 0
    for _, size, entry in sorted(pictures):
        if total - removed <= max_bytes * KEEP:
            break
        with contextlib.suppress(FileNotFoundError):
            entry.unlink()
            removed += size
    return removed
