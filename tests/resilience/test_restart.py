"""The server process killed (SIGKILL) and started again mid-epoch, on the same data and
port: the epoch, a ``stream()`` and a ``follow()`` go on where they stopped and deliver
everything exactly once. PostgreSQL restarted under a running server: the same."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from annostream import Project
from tests import services as svc
from tests.resilience.conftest import ServerProcess, build_store, fingerprint

pytestmark = pytest.mark.timeout(300)
N = 60


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, new_store_dir: Callable[[Path], Path]
) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    store_dir, key = build_store(tmp_path_factory.mktemp("restart"), new_store_dir, N)
    server = ServerProcess(store_dir)
    server.start()
    yield server, key
    server.stop()


def _project(server: ServerProcess, key: dict[str, str]) -> Project:
    return Project("resilience", key["client_id"], key["client_secret"], host=server.url)


def _restart_later(server: ServerProcess, down_for: float = 1.0) -> threading.Thread:
    """Kill the server now; start it again on the same port after ``down_for`` seconds."""
    server.kill()
    thread = threading.Thread(target=lambda: (time.sleep(down_for), server.start()))
    thread.start()
    return thread


def _disturbed(items: Iterator, after: int, disturb: Callable[[], threading.Thread]) -> list:
    """Consume ``items``, calling ``disturb`` after ``after`` of them (reads ahead are at
    most two batches, so what follows must be read while the disturbance lasts)."""
    got, thread = [], None
    for n, item in enumerate(items, 1):
        got.append(item)
        if n == after:
            thread = disturb()
    assert thread is not None
    thread.join()
    return got


def test_epoch_survives_a_server_restart(server: tuple[ServerProcess, dict[str, str]]) -> None:
    proc, key = server
    ds = _project(proc, key).dataset("Default").with_options(decode=None, batch_size=4, prefetch=1)
    clean = [fingerprint(s) for s in ds]
    got = _disturbed((fingerprint(s) for s in ds), N // 3, lambda: _restart_later(proc))
    assert got == clean


def test_stream_survives_a_server_restart(server: tuple[ServerProcess, dict[str, str]]) -> None:
    proc, key = server
    ds = _project(proc, key).dataset("Default").with_options(batch_size=4, prefetch=1)
    clean = list(ds.stream(decode=None, transform=fingerprint, seed=3))
    got = _disturbed(
        iter(ds.stream(decode=None, transform=fingerprint, seed=3)), N // 2, lambda: _restart_later(proc)
    )
    assert got == clean and len({fp[0] for fp in got}) == N


def test_follow_survives_a_server_restart(server: tuple[ServerProcess, dict[str, str]]) -> None:
    proc, key = server
    project = _project(proc, key)
    ds = project.dataset("Default")
    since = project.revision
    data = (Path(__file__).parent / "faultproxy.py").read_bytes()  # any bytes: a text file
    for n in range(9):
        project.upload("Default", data=data + str(n).encode(), filename=f"note-{n}.txt")
    head = project.revision
    clean = list(ds.follow(since=since, until=head, page_size=2, wait=1))
    got = _disturbed(
        iter(ds.follow(since=since, until=head, page_size=2, wait=1)), 3, lambda: _restart_later(proc)
    )
    assert got == clean and len(got) == 9


@pytest.mark.parametrize("stack", ["pg"], indirect=True)
def test_epoch_survives_a_postgres_restart(tmp_path: Path, stack: str, services: svc.Services) -> None:
    """A PostgreSQL of the test's own, restarted mid-epoch under a running server."""
    pg_root = Path(tempfile.mkdtemp(prefix="annostream-pg-restart-"))
    pg_root.chmod(0o755)  # the postgres user must reach its data directory inside
    url = svc.start_postgres(pg_root)
    try:
        own = svc.Services(url, services.s3_endpoint)
        store_dir, key = build_store(tmp_path, own.make_store_dir, N)
        proc = ServerProcess(store_dir)
        proc.start()
        try:
            ds = _project(proc, key).dataset("Default").with_options(decode=None, batch_size=4, prefetch=1)
            clean = [fingerprint(s) for s in ds]
            seen_down: list[int] = []

            def restart() -> threading.Thread:
                svc.stop_postgres(pg_root)
                seen_down.append(httpx.get(f"{proc.url}/readyz", timeout=10).status_code)
                thread = threading.Thread(target=svc.restart_postgres, args=(pg_root, 1.0))
                thread.start()
                return thread

            got = _disturbed((fingerprint(s) for s in ds), N // 3, restart)
            assert got == clean
            assert seen_down == [503], "readiness reports the database while it is down"
            assert httpx.get(f"{proc.url}/readyz", timeout=10).status_code == 200
        finally:
            proc.stop()
    finally:
        svc.stop_postgres(pg_root)
        shutil.rmtree(pg_root, ignore_errors=True)
