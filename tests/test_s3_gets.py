"""Whole-blob reads from S3 (moto) go out as signed GETs on the store's own connection pool and
answer as boto3 did: the bytes in order, a missing blob as FileNotFoundError, keys that need
quoting; behind a proxy or without credentials they go through boto3 (which honours both)."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

from annostream.store.s3 import S3BlobStore
from annostream.store.sha import sha256_hex
from tests import services as svc


def _store(services: svc.Services, prefix: str = "gets") -> S3BlobStore:
    return S3BlobStore(svc.BUCKET, f"{prefix}-{os.urandom(4).hex()}", endpoint=services.s3_endpoint)


@pytest.mark.parametrize("stack", ["pg"], indirect=True)
def test_reads_are_signed_gets_and_answer_the_bytes_in_order(stack: str, services: svc.Services) -> None:
    store = _store(services)
    assert store._gets is not None  # credentials, no proxy: the signed path is the one tested
    data = [os.urandom(3000 + i) for i in range(40)]
    shas = [store.put(d)[0] for d in data]
    assert store.get(shas[7]) == data[7]
    order = [*reversed(shas), shas[0], shas[0]]
    assert list(store.get_many(order)) == [*reversed(data), data[0], data[0]]


@pytest.mark.parametrize("stack", ["pg"], indirect=True)
def test_a_missing_blob_is_file_not_found(stack: str, services: svc.Services) -> None:
    store = _store(services)
    absent = sha256_hex(b"never stored")
    with pytest.raises(FileNotFoundError, match=absent):
        store.get(absent)
    with pytest.raises(FileNotFoundError):
        list(store.get_many([store.put(b"here")[0], absent]))


@pytest.mark.parametrize("stack", ["pg"], indirect=True)
def test_a_prefix_that_needs_quoting_reads_back(stack: str, services: svc.Services) -> None:
    store = _store(services, "a b+c=d%e")
    sha, _ = store.put(b"quoted key")
    assert store.get(sha) == b"quoted key"
    assert store.client.get_object(Bucket=store.bucket, Key=store.key(sha))["Body"].read() == b"quoted key"


@pytest.mark.parametrize("stack", ["pg"], indirect=True)
def test_behind_a_proxy_reads_go_through_boto3(stack: str, services: svc.Services, monkeypatch: Any) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")  # boto3 honours this; a plain pool would not
    store = _store(services)
    assert store._gets is None
    sha, _ = store.put(b"through boto3")
    assert store.get(sha) == b"through boto3"
    with pytest.raises(FileNotFoundError):
        store.get(sha256_hex(b"absent"))


@pytest.mark.parametrize("stack", ["pg"], indirect=True)
def test_the_endpoint_answers_beside_many_open_connections(stack: str, services: svc.Services) -> None:
    """Every server of a test session keeps its pools to the one S3 endpoint open; the endpoint
    must go on answering new connections (waitress's default limit of 100 made them wait)."""
    host, port = services.s3_endpoint.removeprefix("http://").rsplit(":", 1)
    held = [socket.create_connection((host, int(port)), timeout=5) for _ in range(150)]
    try:
        store = _store(services)
        sha, _ = store.put(b"still answered")
        assert store.get(sha) == b"still answered"
    finally:
        for sock in held:
            sock.close()
