"""The one way a write commits: a transaction, a revision, and blobs taken back on failure.

``guarded_blobs`` yields a ``BlobGuard`` that remembers the blobs a write added to the blob
store; if the block fails, they are deleted again (they are content addressed, so a blob
that was already there is never touched). ``commit`` wraps it around a transaction that
allocates the project's next revision: every public write of the service goes through it,
and offline copies use ``guarded_blobs`` around their own transaction (they create the
project first).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, insert, select

from annostream.service.projects import ProjectRef
from annostream.store import Store
from annostream.store.tables import blobs
from annostream.store.versioning import begin_commit


def record_blob(conn: Connection, sha: str, size: int, content_type: str) -> None:
    """The ``blobs`` row of a blob, inserted when it is not there yet."""
    if conn.execute(select(blobs.c.sha256).where(blobs.c.sha256 == sha)).first() is None:
        conn.execute(insert(blobs).values(sha256=sha, size=size, content_type=content_type))


class BlobGuard:
    """Tracks blobs a write added, so a failed transaction can take them back."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.added: list[str] = []

    def put(self, conn: Connection, data: bytes, content_type: str) -> str:
        sha, new = self.store.blobs.put(data)
        if new:
            self.added.append(sha)
        record_blob(conn, sha, len(data), content_type)
        return sha


@contextmanager
def guarded_blobs(store: Store) -> Iterator[BlobGuard]:
    """A BlobGuard whose blobs are deleted again if the block raises."""
    guard = BlobGuard(store)
    try:
        yield guard
    except BaseException:
        for sha in guard.added:
            store.blobs.delete(sha)
        raise


@contextmanager
def commit(store: Store, ref: ProjectRef, message: str) -> Iterator[tuple[Connection, int, BlobGuard]]:
    """One commit of ``ref``: (connection, new revision, blob guard); all of it or nothing."""
    with guarded_blobs(store) as guard, store.engine.begin() as conn:
        rev = begin_commit(conn, ref.id, message)
        yield conn, rev, guard
