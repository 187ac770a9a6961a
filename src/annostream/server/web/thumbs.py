"""Thumbnails made on demand and cached on disk by (blob sha256, size).

Invariants: a size is one of ``SIZES`` (no caller chooses how big a decode is); a blob is
decoded at most once per size, however many requests ask at once: a per-key lock within the
process and an exclusive ``flock`` on a per-key lock file across server processes, with the
cache looked at again under the lock. The lock file is removed by its holder before it lets
go, and a waiter that then finds its file unlinked locks afresh, so no lock file stays behind.
A thumbnail appears in the cache by an atomic rename, so a reader never sees half a file. The
cache holds only derived bytes: deleting it is safe.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from annostream.errors import InvalidInput
from annostream.store import Store

SIZES: tuple[int, ...] = (128, 256, 512)
MEDIA_TYPE = "image/jpeg"


class _KeyLocks:
    """One lock per key, alive while someone holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, int], tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def hold(self, key: tuple[str, int]) -> Iterator[None]:
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


def check_size(size: int) -> int:
    if size not in SIZES:
        raise InvalidInput(f"size: must be one of {list(SIZES)}", {"field": "size"})
    return size


def cache_path(cache_dir: Path, sha256: str, size: int) -> Path:
    return cache_dir / sha256[:2] / f"{sha256}-{size}.jpg"


def render(data: bytes, size: int) -> bytes:
    """A JPEG at most ``size`` pixels a side; JPEGs are decoded at a reduced scale (draft)."""
    source = Image.open(io.BytesIO(data))
    source.draft("RGB", (size, size))
    image = source.convert("RGB")
    image.thumbnail((size, size))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=82)
    return out.getvalue()


def thumbnail(store: Store, cache_dir: Path, sha256: str, size: int) -> tuple[Path, bool]:
    """The cached thumbnail's path, and whether this call made it (False: it was there).

    The caller has already checked that the blob is readable by whoever asked.
    """
    check_size(size)
    path = cache_path(cache_dir, sha256, size)
    if path.is_file():
        return path, False
    path.parent.mkdir(parents=True, exist_ok=True)
    with _LOCKS.hold((sha256, size)), _file_lock(path.with_suffix(".lock")):
        if path.is_file():
            return path, False
        try:
            data = render(store.blobs.get(sha256), size)
        except (OSError, Image.DecompressionBombError) as exc:
            raise InvalidInput(
                f"this blob cannot be decoded as an image ({exc})", {"sha256": sha256}
            ) from exc
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path, True
