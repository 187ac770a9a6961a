"""Oversized and anonymous bodies cost the server no memory: the server's RSS, read with
psutil on its own pid, stays within 100 MiB of where it started while they are refused, on
the native routes and the Diffgram ones alike; and every route with a body refuses a caller
it does not let in before it reads a byte of that body."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from annostream.operations import API_PREFIX, OPERATIONS, Op
from annostream.server.diffgram_compat import DIFFGRAM_OPERATIONS
from tests.security.conftest import JSON_CAP, World, basic

MiB = 1 << 20


def _body(total: int) -> Iterator[bytes]:
    chunk = b"\x00" * MiB
    for _ in range(total // MiB):
        yield chunk


def _form_part(name: str, total: int, filename: str | None = None) -> Iterator[bytes]:
    """A well-formed multipart body (boundary ``x``) of one part ``name`` (a file part when
    ``filename`` is given, else a JSON string field) of ``total`` bytes."""
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    yield f"--x\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + (b"" if filename else b'"')
    chunk = b"a" * MiB
    for _ in range(total // MiB):
        yield chunk
    yield (b"" if filename else b'"') + b"\r\n--x--\r\n"


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


MULTIPART = {"Content-Type": "multipart/form-data; boundary=x"}
JSON = {"Content-Type": "application/json"}
DG_UPLOAD = "/api/walrus/v1/project/priv/input/from_local"


@pytest.mark.parametrize(
    "case",
    [
        "anonymous blob PUT",
        "anonymous JSON import",
        "anonymous multipart",
        "editor JSON import over the cap",
        "anonymous Diffgram upload",
        "anonymous Diffgram file list",
        "anonymous Diffgram file view",
        "editor Diffgram upload over the cap",
        "editor Diffgram JSON field over the JSON cap",
        "editor NDJSON line over the JSON cap",
    ],
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
    editor = basic(world.keys["priv:editor"])
    dg_requests = {
        "anonymous Diffgram upload": ("POST", DG_UPLOAD, 400, MULTIPART),
        "anonymous Diffgram file list": ("POST", "/api/project/priv/user/u/file/list", 40, JSON),
        # names its project in the body: read only up to a small cap before it is authorised
        "anonymous Diffgram file view": ("POST", "/api/v1/file/view", 40, JSON),
    }
    with httpx.Client(base_url=world.url, timeout=120) as http:
        if case == "editor NDJSON line over the JSON cap":  # within the import cap, one line over
            url = "/api/v2/projects/priv/datasets/Default/import:records"
            body = _body(JSON_CAP + 8 * MiB)
            status = _send(http, method="POST", url=url, content=body, headers={**JSON, **editor})
        elif case == "editor Diffgram upload over the cap":
            body = _form_part("file", 600 * MiB, "big.png")
            status = _send(http, method="POST", url=DG_UPLOAD, content=body, headers={**MULTIPART, **editor})
        elif case == "editor Diffgram JSON field over the JSON cap":
            body = _form_part("json", JSON_CAP + 8 * MiB)
            status = _send(http, method="POST", url=DG_UPLOAD, content=body, headers={**MULTIPART, **editor})
        else:
            method, url, mib, sent_headers = {**requests, **dg_requests}[case]
            status = _send(http, method=method, url=url, content=_body(mib * MiB), headers=sent_headers)
    grown = (rss.memory_info().rss - start) / MiB
    assert status in (None, 401, 413), status
    if case.startswith("editor") and "over" in case:
        assert status in (None, 413), status
    assert grown < 100, f"server RSS grew by {grown:.0f} MiB"


BODY_ROUTES = {
    **{(op.method, API_PREFIX + op.path): op for op in OPERATIONS.values() if op.body != "none"},
    **{(op.method, op.path): op for op in DIFFGRAM_OPERATIONS.values() if op.body != "none"},
}


def _status_of_a_bottomless_request(url: str, method: str, path: str, headers: dict[str, str]) -> int:
    """The status a server answers to a request that declares a 1 TiB body and sends one byte.
    A server that read the body before refusing would never answer (the socket times out)."""
    where = urlsplit(url)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {where.netloc}", f"Content-Length: {1 << 40}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection((where.hostname, where.port), timeout=60) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + b"{")
        head = conn.recv(65536)
    return int(head.split(b" ", 2)[1])


@pytest.mark.parametrize("method, path", sorted(BODY_ROUTES))
def test_the_refusal_comes_before_the_body(world: World, method: str, path: str) -> None:
    op: Op = BODY_ROUTES[(method, path)]
    target = path.format(project="priv", dataset="Default", file_id=world.file_ids["priv"], username="u")
    content_type = MULTIPART if op.body == "multipart" else JSON
    got = {
        caller: _status_of_a_bottomless_request(
            world.url, method, target, {**content_type, **world.headers(caller, "priv")}
        )
        for caller in ("anonymous", "malformed", "foreign")
    }
    if op.name == "file_view":  # its project is in its body: past authentication, a small cap
        assert got == {"anonymous": 413, "malformed": 401, "foreign": 413}, got
    else:
        assert got == {"anonymous": 401, "malformed": 401, "foreign": 403}, got
