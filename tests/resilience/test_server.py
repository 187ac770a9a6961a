"""The server's side of resilience: readiness apart from liveness, shutdown that lets
requests finish and ends long polls with a normal reply, SQLite writers that wait for each
other instead of failing, and retry policy edges seen from the client."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from annostream import Project, Retry
from annostream.client.transports import EmbeddedTransport, HttpTransport
from annostream.errors import TransportError
from annostream.server.launch import free_port
from tests.resilience.conftest import ServerProcess, build_store
from tests.resilience.faultproxy import FaultProxy, Faults

pytestmark = pytest.mark.timeout(180)


@pytest.fixture()
def store(tmp_path: Path, new_store_dir: Callable[[Path], Path]) -> tuple[Path, dict[str, str]]:
    return build_store(tmp_path, new_store_dir, 8)


def test_readiness_names_what_is_missing(store: tuple[Path, dict[str, str]], stack: str) -> None:
    store_dir, _ = store
    proc = ServerProcess(store_dir)
    proc.start()
    try:
        ready = httpx.get(f"{proc.url}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        if stack == "sqlite":  # the blob folder gone: alive, but not ready, and why
            blobs = store_dir / "blobs"
            blobs.rename(store_dir / "elsewhere")
            try:
                down = httpx.get(f"{proc.url}/readyz", timeout=10)
                assert httpx.get(f"{proc.url}/healthz", timeout=10).status_code == 200
            finally:
                (store_dir / "elsewhere").rename(blobs)
            assert down.status_code == 503
            assert any(r.startswith("blob store") for r in down.json()["reasons"]), down.json()
            assert httpx.get(f"{proc.url}/readyz", timeout=10).status_code == 200
    finally:
        proc.stop()


def test_sigterm_ends_long_polls_with_a_normal_reply(store: tuple[Path, dict[str, str]]) -> None:
    store_dir, key = store
    proc = ServerProcess(store_dir)
    proc.start()
    head = Project("resilience", key["client_id"], key["client_secret"], host=proc.url).revision
    replies: list[httpx.Response] = []

    def long_poll() -> None:
        replies.append(
            httpx.get(
                f"{proc.url}/api/v2/projects/resilience/changes",
                params={"since": head, "wait": 50},
                auth=(key["client_id"], key["client_secret"]),
                timeout=120,
            )
        )

    polls = [threading.Thread(target=long_poll) for _ in range(3)]
    for t in polls:
        t.start()
    time.sleep(1.5)  # the polls are waiting on the server now
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    for t in polls:
        t.join(60)
    # uvicorn exits by re-raising the signal once its graceful shutdown is done
    assert proc.proc.wait(60) in (0, -signal.SIGTERM)
    assert time.monotonic() - started < 25, "the polls did not hold the shutdown for their wait"
    assert [r.status_code for r in replies] == [200, 200, 200]
    assert all(r.json() == {"events": [], "cursor": head, "head": head} for r in replies)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{proc.url}/healthz", timeout=2)


_WRITER = """
import sys
from annostream.client.transports import EmbeddedTransport, HttpTransport
t = EmbeddedTransport(sys.argv[1])
for n in range(int(sys.argv[3])):
    t.upload_file("resilience", "Default", f"{sys.argv[2]}-{n}.txt", f"{sys.argv[2]} {n}".encode(), [], {})
"""


def test_two_sqlite_writer_processes_never_see_database_is_locked(tmp_path: Path) -> None:
    store_dir, _ = build_store(tmp_path, lambda p: p, 2)
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(store_dir), name, "40"], stderr=subprocess.PIPE)
        for name in ("a", "b")
    ]
    errors = [w.communicate(timeout=150)[1].decode() for w in writers]
    assert [w.returncode for w in writers] == [0, 0], errors
    assert not any("locked" in e for e in errors)
    ids, _ = EmbeddedTransport(store_dir).ids("resilience", "Default", "file.type = text", None)
    assert len(ids) == 80


def test_a_server_never_reached_fails_fast_with_a_hint() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"is `annostream serve` running at http://127\.0\.0\.1:\d+\?"):
        Project("resilience", host=dead)
    assert time.monotonic() - started < 2.5


def test_the_budget_ends_with_the_url_the_last_status_and_the_tries(
    store: tuple[Path, dict[str, str]],
) -> None:
    store_dir, key = store
    proc = ServerProcess(store_dir)
    proc.start()
    try:
        with FaultProxy(proc.port, Faults(error=1.0), seed=5) as proxy:  # every answer a 502/503
            transport = HttpTransport(
                proxy.url, key["client_id"], key["client_secret"], retry=Retry(tries=4, budget=30)
            )
            with pytest.raises(TransportError) as caught:
                transport.ids("resilience", "Default", None, None)
        message = str(caught.value)
        assert f"GET {proxy.url}/api/v2/projects/resilience/datasets/Default/ids" in message
        assert "after 4 tries" in message and "last: HTTP 50" in message
        assert proxy.counts["502"] + proxy.counts["503"] == 4
    finally:
        proc.stop()
