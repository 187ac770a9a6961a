"""Oversized and anonymous bodies cost the server no memory: the server's RSS, read with
psutil on its own pid, stays within 100 MiB of where it started while they are refused."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psutil
import pytest

from tests.security.conftest import World, basic

MiB = 1 << 20


def _body(total: int) -> Iterator[bytes]:
    chunk = b"\x00" * MiB
    for _ in range(total // MiB):
        yield chunk


def _send(http: httpx.Client, **kwargs) -> int | None:  # type: ignore[no-untyped-def]
    """The status, or None when the server closed the connection before reading it all."""
    try:
        return http.request(**kwargs).status_code
    except (httpx.RemoteProtocolError, httpx.WriteError, httpx.ReadError):
        return None


@pytest.fixture()
def rss(world: World) -> Iterator[psutil.Process]:
    pid = httpx.get(f"{world.url}/healthz").json()["pid"]
    yield psutil.Process(pid)


@pytest.mark.parametrize(
    "case",
    ["anonymous blob PUT", "anonymous JSON import", "anonymous multipart", "editor JSON import over the cap"],
)
def test_oversized_bodies_leave_memory_flat(world: World, rss: psutil.Process, case: str) -> None:
    start = rss.memory_info().rss
    headers = {"Content-Type": "application/octet-stream"}
    requests = {
        "anonymous blob PUT": ("PUT", "/api/v2/projects/priv/blobs", 600, headers),
        "anonymous JSON import": (
            "POST",
            "/api/v2/projects/priv/datasets/Default/import",
            40,
            {"Content-Type": "application/json"},
        ),
        "anonymous multipart": (
            "POST",
            "/api/v2/projects/priv/datasets/Default/files",
            400,
            {"Content-Type": "multipart/form-data; boundary=x"},
        ),
        "editor JSON import over the cap": (
            "POST",
            "/api/v2/projects/priv/datasets/Default/import",
            600,
            {"Content-Type": "application/json", **basic(world.keys["priv:editor"])},
        ),
    }
    method, url, mib, sent_headers = requests[case]
    with httpx.Client(base_url=world.url, timeout=120) as http:
        status = _send(http, method=method, url=url, content=_body(mib * MiB), headers=sent_headers)
    grown = (rss.memory_info().rss - start) / MiB
    assert status in (None, 401, 413), status
    assert grown < 100, f"server RSS grew by {grown:.0f} MiB"
