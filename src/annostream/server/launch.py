"""Start a real server process on loopback and wait until it answers (demo, tests, bench)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ours(pid: object, proc: subprocess.Popen[bytes]) -> bool:
    """Whether the process that answered is the server started or one of its workers, not
    another server that took the port between ``free_port`` and the bind."""
    if pid == proc.pid:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return not Path("/proc/self").is_dir()  # without /proc the parent cannot be told
    return int(stat.rsplit(")", 1)[1].split()[1]) == proc.pid  # the parent's pid


@contextmanager
def running_server(
    data: str | os.PathLike[str],
    *,
    port: int | None = None,
    workers: int = 1,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> Iterator[str]:
    """``annostream serve`` on 127.0.0.1 in a child process; yields its base URL once that very
    process answers (a port it picked and lost to another process is picked again)."""
    for attempt in range(3):
        chosen = port or free_port()
        proc = subprocess.Popen(
            serve_command(data, chosen, workers), env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL
        )
        url = f"http://127.0.0.1:{chosen}"
        try:
            if wait_until_answering(proc, url, timeout):
                yield url
                return
            if port is not None or attempt == 2:
                raise RuntimeError(f"server exited with code {proc.returncode} before answering")
        finally:
            _stop(proc)


def serve_command(data: str | os.PathLike[str], port: int, workers: int = 1) -> list[str]:
    """The command line of ``annostream serve`` for ``data`` on 127.0.0.1:``port``."""
    return [
        sys.executable,
        "-m",
        "annostream.cli",
        "serve",
        "--data",
        str(Path(data)),
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def wait_until_answering(proc: subprocess.Popen[bytes], url: str, timeout: float) -> bool:
    """True once ``proc`` answers /healthz at ``url``; False if it exited first (its port taken)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(httpx.TransportError, ValueError):
            reply = httpx.get(f"{url}/healthz", timeout=1.0)
            if reply.status_code == 200 and _ours(reply.json().get("pid"), proc):
                return True
        if time.monotonic() > deadline:
            raise TimeoutError(f"server at {url} did not answer within {timeout} s")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
