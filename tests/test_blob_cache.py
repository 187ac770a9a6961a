"""The read-through blob cache over each stack's blob store (a folder; S3 via moto), in a
forked child too, and idle PostgreSQL connections replaced after the server dropped them."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

from annostream.client.transports import EmbeddedTransport
from annostream.store import Store
from annostream.store.blobs import BlobStore, LocalBlobStore, open_blob_store
from annostream.store.cache import CACHE_BYTES_ENV, CACHE_ENV, CachedBlobStore
from annostream.store.sha import sha256_hex
from tests.conftest import Source


@pytest.fixture
def remote(stack: str, tmp_path: Path, request: pytest.FixtureRequest) -> BlobStore:
    """The stack's blob store: a local folder, or a fresh prefix in S3 (moto)."""
    if stack == "pg":
        return open_blob_store(request.getfixturevalue("services").blobs_url())
    return LocalBlobStore(tmp_path / "remote")


def _blobs(n: int, size: int = 1000) -> list[bytes]:
    return [bytes([i]) * size + os.urandom(8) for i in range(n)]


def _held(cache: CachedBlobStore) -> set[str]:
    return {sha for sha, _ in cache.local.scan()}


def test_reads_are_kept_and_served_without_the_remote(remote: BlobStore, tmp_path: Path) -> None:
    cache = CachedBlobStore(remote, tmp_path / "cache")
    data = _blobs(3)
    shas = [remote.put(d)[0] for d in data]
    assert cache.get(shas[0]) == data[0]
    assert list(cache.get_many([shas[1], shas[0], shas[2], shas[1]])) == [data[1], data[0], data[2], data[1]]
    assert _held(cache) == set(shas) and cache.cached_bytes() == sum(map(len, data))
    for sha in shas:  # gone from the remote store: the copies answer
        remote.delete(sha)
    assert list(cache.get_many(shas)) == data
    assert cache.open(shas[2]).read() == data[2]
    assert CachedBlobStore(remote, tmp_path / "cache").cached_bytes() == sum(map(len, data)), "kept on reopen"


def test_least_recently_used_goes_first_within_the_bound(remote: BlobStore, tmp_path: Path) -> None:
    data = _blobs(4)
    a, b, c, d = (remote.put(x)[0] for x in data)
    cache = CachedBlobStore(remote, tmp_path / "cache", max_bytes=3 * len(data[0]))
    list(cache.get_many([a, b, c]))
    cache.get(a)  # a is now the most recently used: b goes when d comes
    cache.get(d)
    assert _held(cache) == {a, c, d}
    assert cache.cached_bytes() <= cache.max_bytes
    assert cache.get(b) == data[1], "an evicted blob is fetched again"


def test_bytes_that_are_not_their_name_are_not_kept(remote: BlobStore, tmp_path: Path) -> None:
    good, bad = _blobs(2)
    sha = sha256_hex(good)
    if isinstance(remote, LocalBlobStore):
        path = remote.local_path(sha)
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bad)
    else:  # an object written under another blob's name, behind the store's back
        s3: Any = remote
        s3.client.put_object(Bucket=s3.bucket, Key=s3.key(sha), Body=bad)
    cache = CachedBlobStore(remote, tmp_path / "cache")
    assert cache.get(sha) == bad  # handed on as read (the client checks the hash and refetches)
    assert _held(cache) == set() and cache.cached_bytes() == 0


def test_delete_drops_the_copy(remote: BlobStore, tmp_path: Path) -> None:
    cache = CachedBlobStore(remote, tmp_path / "cache")
    sha, _ = cache.put(_blobs(1)[0])
    cache.get(sha)
    cache.delete(sha)
    assert _held(cache) == set() and not remote.exists(sha)
    with pytest.raises(FileNotFoundError):
        cache.get(sha)


def test_a_bound_that_is_not_positive_is_refused(remote: BlobStore, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=CACHE_BYTES_ENV):
        CachedBlobStore(remote, tmp_path / "cache", max_bytes=0)


def test_a_store_opened_with_the_cache_streams_the_same_items(
    source: Source, stack: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = EmbeddedTransport(source.store_dir)
    ids = plain.ids("coco-dataset", "Default", None, None)[0].tolist()
    expected = plain.items("coco-dataset", ids, None, True)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    store = Store.open(source.store_dir)
    # Only a remote store is read through the cache; a local folder already is one.
    assert isinstance(store.blobs, CachedBlobStore) == (stack == "pg")
    for _ in range(2):  # filling the cache, then from it
        cached = EmbeddedTransport(source.store_dir)
        assert cached.items("coco-dataset", ids, None, True) == expected


def test_reads_work_in_a_forked_child(remote: BlobStore, tmp_path: Path) -> None:
    """A DataLoader worker forked from an embedded store: the cache's lock and the S3 pool of
    GET threads are the child's own, whatever the parent's threads held at the fork."""
    cache = CachedBlobStore(remote, tmp_path / "cache")
    shas = [remote.put(d)[0] for d in _blobs(20)]
    assert [sha256_hex(b) for b in cache.get_many(shas[:10])] == shas[:10]  # the parent's pool exists
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=lambda: out.put([sha256_hex(b) for b in cache.get_many(shas)]))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert out.get(timeout=5) == shas


@pytest.mark.parametrize("stack", ["pg"], indirect=True)
def test_idle_connections_dropped_by_postgres_are_replaced(
    stack: str, services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import text

    from annostream.store import db

    url = services.create_database()
    engine, killer = db.create_db_engine(url), db.create_db_engine(url)
    with engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with killer.connect() as other:  # the server ends the pooled connection
        assert other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
    killer.dispose()
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)  # as if idle long enough
    with engine.connect() as conn:  # not the dropped connection: a fresh one
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    engine.dispose()
