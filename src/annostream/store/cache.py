"""A remote blob store (S3) read through a bounded folder on the server's local disk.

Blobs are named by the sha256 of their bytes and never change, so a copy is never stale:
reads of a cached blob cost a local file read instead of an object-store request (on S3
each request is a round trip plus the client library's CPU). Only reads fill the cache,
and only with bytes whose sha256 is their name; writes, listings, deletions and presigned
URLs go to the remote store (a deletion also drops the copy). Eviction is least recently
used, by bytes, per process: with ``--workers N`` sharing one folder it may hold up to N
times the bound. Off unless ``ANNOSTREAM_BLOB_CACHE`` names a folder
(``ANNOSTREAM_BLOB_CACHE_BYTES`` bounds it, 8 GiB by default).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from annostream.store.blobs import BlobStore, LocalBlobStore
from annostream.store.sha import sha256_hex

CACHE_ENV = "ANNOSTREAM_BLOB_CACHE"
CACHE_BYTES_ENV = "ANNOSTREAM_BLOB_CACHE_BYTES"
DEFAULT_BYTES = 8 << 30
STALE_TEMPORARY_S = 3600.0


class CachedBlobStore:
    """``remote`` with its reads kept in ``root``, at most ``max_bytes`` of them (LRU)."""

    def __init__(
        self, remote: BlobStore, root: str | os.PathLike[str], max_bytes: int = DEFAULT_BYTES
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"{CACHE_BYTES_ENV} must be positive, not {max_bytes}")
        self.remote = remote
        self.local = LocalBlobStore(root)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._sizes: OrderedDict[str, int] = OrderedDict()  # least recently used first
        self._bytes = 0
        for temporary in self.local.temporaries():  # a killed writer's (not a live writer's)
            with contextlib.suppress(FileNotFoundError):
                if time.time() - temporary.stat().st_mtime > STALE_TEMPORARY_S:
                    temporary.unlink()
        held = []
        for sha, mtime in self.local.scan():
            blob = self.local.local_path(sha)
            with contextlib.suppress(FileNotFoundError):  # evicted meanwhile by another process
                held.append((mtime, sha, blob.stat().st_size if blob else 0))
        for _, sha, size in sorted(held):
            self._note(sha, size)

    def _locked(self) -> threading.Lock:
        """The lock, made anew in a forked child (a DataLoader worker of an embedded store):
        another thread of the parent may have held it at the fork, and would never release it."""
        if self._pid != os.getpid():
            self._lock, self._pid = threading.Lock(), os.getpid()
        return self._lock

    def _note(self, sha: str, size: int) -> None:
        """Count ``sha`` as held and most recently used; evict the least used past the bound."""
        evicted = []
        with self._locked():
            if sha in self._sizes:
                self._sizes.move_to_end(sha)
            else:
                self._sizes[sha] = size
                self._bytes += size
            while self._bytes > self.max_bytes and len(self._sizes) > 1:
                old, old_size = self._sizes.popitem(last=False)
                self._bytes -= old_size
                evicted.append(old)
        for old in evicted:
            self.local.delete(old)

    def _forget(self, sha: str) -> None:
        with self._locked():
            size = self._sizes.pop(sha, None)
            if size is not None:
                self._bytes -= size

    def _keep(self, sha: str, data: bytes) -> None:
        """Keep a copy of ``data`` fetched as ``sha``, if its bytes are what the name says."""
        if sha256_hex(data) != sha:
            return
        try:
            self.local.put(data)
        except OSError:  # a full or read-only disk costs the copy, never the read
            return
        self._note(sha, len(data))

    def cached_bytes(self) -> int:
        """Bytes this process counts as held in the folder."""
        with self._locked():
            return self._bytes

    def _local_read(self, sha: str) -> bytes | None:
        if sha not in self._sizes:
            return None
        try:
            data = self.local.get(sha)
        except FileNotFoundError:  # evicted by another process sharing the folder
            self._forget(sha)
            return None
        self._note(sha, len(data))
        return data

    def get(self, sha256: str) -> bytes:
        data = self._local_read(sha256)
        if data is None:
            data = self.remote.get(sha256)
            self._keep(sha256, data)
        return data

    def get_many(self, shas: Iterable[str]) -> Iterator[bytes]:
        """Blobs in order: copies read here, the rest fetched concurrently by the remote."""
        wanted = list(shas)
        held = {sha: data for sha in dict.fromkeys(wanted) if (data := self._local_read(sha)) is not None}
        lacking = [sha for sha in dict.fromkeys(wanted) if sha not in held]
        many = getattr(self.remote, "get_many", None)
        fetched = many(lacking) if many is not None else map(self.remote.get, lacking)
        for sha, data in zip(lacking, fetched, strict=True):
            self._keep(sha, data)
            held[sha] = data
        for sha in wanted:
            yield held[sha]

    def put(self, data: bytes) -> tuple[str, bool]:
        return self.remote.put(data)

    def exists(self, sha256: str) -> bool:
        return self.remote.exists(sha256)

    def open(self, sha256: str) -> BinaryIO:
        if sha256 in self._sizes:
            try:
                return self.local.open(sha256)
            except FileNotFoundError:
                self._forget(sha256)
        return self.remote.open(sha256)

    def local_path(self, sha256: str) -> Path | None:
        return None  # a copy may be evicted while a response still streams it

    def delete(self, sha256: str) -> None:
        self.remote.delete(sha256)
        self._forget(sha256)
        self.local.delete(sha256)

    def scan(self) -> Iterator[tuple[str, float]]:
        return self.remote.scan()

    def ping(self) -> None:
        self.remote.ping()

    def presigned_url(self, sha256: str, **options: Any) -> str | None:
        presign = getattr(self.remote, "presigned_url", None)
        return presign(sha256, **options) if presign is not None else None


def cached_if_configured(remote: BlobStore) -> BlobStore:
    """``remote`` read through the folder ``ANNOSTREAM_BLOB_CACHE`` names, when it names one."""
    folder = os.environ.get(CACHE_ENV)
    if not folder:
        return remote
    limit = os.environ.get(CACHE_BYTES_ENV)
    return CachedBlobStore(remote, folder, int(limit) if limit else DEFAULT_BYTES)
