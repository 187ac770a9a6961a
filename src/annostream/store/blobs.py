"""Content-addressed blob storage behind one small interface.

A blob's name is the sha256 of its bytes, so blobs are immutable, deduplicated for free, and
safe to cache forever on the client. The local backend lays them out as
``root/ab/cd/abcd...`` and writes through a temporary file and an atomic rename; folders are
created 0700 and files 0600 (the store holds private data).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from annostream.store import timings
from annostream.store.sha import check_sha256, sha256_hex


class BlobStore(Protocol):
    """Where file bytes live. Implementations must be safe to share between threads."""

    def put(self, data: bytes) -> tuple[str, bool]:
        """Store ``data``; return its sha256 and whether it was new."""

    def exists(self, sha256: str) -> bool: ...

    def get(self, sha256: str) -> bytes: ...

    def open(self, sha256: str) -> BinaryIO: ...

    def local_path(self, sha256: str) -> Path | None:
        """A filesystem path the server can hand to sendfile, or None."""

    def delete(self, sha256: str) -> None: ...

    def scan(self) -> Iterator[tuple[str, float]]:
        """(sha256, modification time as a Unix timestamp) of every blob held."""

    def ping(self) -> None:
        """Raise unless the store answers (a cheap call: readiness checks)."""


class LocalBlobStore:
    """Blobs in a folder on local disk."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._prefix = str(self.root) + os.sep

    def _path(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> tuple[str, bool]:
        sha = sha256_hex(data)
        path = self._path(sha)
        if path.exists():
            return sha, False
        path.parent.parent.mkdir(exist_ok=True, mode=0o700)
        path.parent.mkdir(exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")  # a 0600 file
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha, True

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).exists()

    def local_file(self, sha256: str) -> str:
        """``local_path`` as a plain string, without pathlib's parsing (the hot path of every
        inline batch: framed replies read blobs straight into their buffers from it)."""
        check_sha256(sha256)
        return f"{self._prefix}{sha256[:2]}{os.sep}{sha256[2:4]}{os.sep}{sha256}"

    def get(self, sha256: str) -> bytes:
        # An unbuffered read, without a buffered reader's extra copy.
        with open(self.local_file(sha256), "rb", buffering=0) as fh:
            return fh.readall()

    def open(self, sha256: str) -> BinaryIO:
        return self._path(sha256).open("rb")

    def local_path(self, sha256: str) -> Path | None:
        return Path(self.local_file(sha256))

    def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)

    def scan(self) -> Iterator[tuple[str, float]]:
        for path in self.root.glob("??/??/*"):
            if len(path.name) == 64 and not path.name.startswith("."):
                yield path.name, path.stat().st_mtime

    def temporaries(self) -> list[Path]:
        """Half-written files a killed writer left behind (never renamed into place)."""
        return sorted(self.root.glob("??/??/.tmp-*"))

    def ping(self) -> None:
        if not self.root.is_dir() or not os.access(self.root, os.W_OK):
            raise OSError(f"blob folder {self.root} is missing or not writable")


def get_many(store: BlobStore, shas: Iterable[str]) -> Iterator[bytes]:
    """Blobs in order; concurrently where the backend can (``get_many``), else one by one.
    The time the caller waits for each is the ``object_store`` phase (when timings are on)."""
    many = getattr(store, "get_many", None)
    blobs = iter(many(shas)) if many is not None else (store.get(sha) for sha in shas)
    if not timings.ENABLED:
        yield from blobs
        return
    while True:
        t0 = time.perf_counter()
        data = next(blobs, None)
        timings.add("object_store", time.perf_counter() - t0, 0 if data is None else 1)
        if data is None:
            return
        yield data


def open_blob_store(url: str) -> BlobStore:
    """A blob store from a URL: a plain path or ``file://`` (local), ``s3://bucket/prefix``."""
    if url.startswith("s3://"):
        from annostream.store.cache import cached_if_configured
        from annostream.store.s3 import S3BlobStore

        return cached_if_configured(S3BlobStore.from_url(url))
    if url.startswith("file://"):
        url = url[len("file://") :]
    if "://" in url:
        raise ValueError(f"unsupported blob store URL: {url}")
    return LocalBlobStore(url)
