"""PostgreSQL and an S3 endpoint (moto) on loopback, for tests, CI and developers.

``python -m tests.services start DIR`` starts both in the background and prints ``export``
lines (``ANNOSTREAM_TEST_PG_URL``, ``ANNOSTREAM_TEST_S3_ENDPOINT``) for a shell to eval;
``python -m tests.services stop DIR`` stops them. The test fixtures use the same functions
when those variables are unset, and skip the PostgreSQL+S3 stack when the binaries are absent.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

PG_ENV = "ANNOSTREAM_TEST_PG_URL"
S3_ENV = "ANNOSTREAM_TEST_S3_ENDPOINT"
BUCKET = "annostream-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin(name: str) -> str | None:
    """A PostgreSQL server binary: on PATH, or where Debian installs it (not on PATH)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    return candidates[-1] if candidates else None


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: drop to the ``postgres`` user there."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def start_postgres(root: Path) -> str:
    """initdb into ``root`` and start a server on a free loopback port; return its URL."""
    # Absolute: the server runs in its data folder, where a relative socket folder is not found.
    root = root.resolve()
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise FileNotFoundError("PostgreSQL server binaries not found (apt-get install postgresql)")
    root.mkdir(parents=True, exist_ok=True)
    data = root / "pgdata"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        closed = [p for p in root.parents if not p.stat().st_mode & 0o001]
        if closed:
            raise RuntimeError(f"the postgres user cannot reach {root}: {closed[0]} is not world-executable")
    port = _free_port()
    subprocess.run(
        _as_postgres([initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root} "
        "-c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    (root / "options").write_text(options)
    _pg_start(root)
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"


def _pg_start(root: Path) -> None:
    pg_ctl = pg_bin("pg_ctl")
    assert pg_ctl is not None
    subprocess.run(
        _as_postgres(
            [
                pg_ctl,
                "-D",
                str(root / "pgdata"),
                "-l",
                str(root / "postgres.log"),
                "-o",
                (root / "options").read_text(),
                "-w",
                "start",
            ]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )


def restart_postgres(root: Path, down_for: float = 1.0) -> None:
    """Stop the server started in ``root`` (every connection dropped), wait, start it again
    on the same port with the same data."""
    stop_postgres(root)
    time.sleep(down_for)
    _pg_start(root)


def stop_postgres(root: Path) -> None:
    pg_ctl = pg_bin("pg_ctl")
    if pg_ctl and (root / "pgdata").exists():
        subprocess.run(
            _as_postgres([pg_ctl, "-D", str(root / "pgdata"), "-m", "fast", "stop"]),
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def moto_available() -> bool:
    try:
        import moto.moto_server.werkzeug_app  # noqa: F401
        import waitress  # noqa: F401
    except ImportError:
        return False
    return True


def start_moto(root: Path) -> str:
    """moto's S3 service on a free loopback port (tests/s3_endpoint.py), detached; return its
    endpoint URL."""
    if not moto_available():
        raise FileNotFoundError("moto[server] or waitress is not installed (pip install -e '.[dev]')")
    root.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    with (root / "moto.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("s3_endpoint.py")), str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (root / "moto.pid").write_text(str(proc.pid))
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto exited early; see {root / 'moto.log'}")
        try:
            httpx.get(endpoint, timeout=1.0)
            return endpoint
        except httpx.TransportError:
            time.sleep(0.2)
    raise TimeoutError("moto did not answer within 60 s")


def stop_moto(root: Path) -> None:
    pid_file = root / "moto.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid_file.read_text()), 15)
        pid_file.unlink()


def use_fake_aws_credentials() -> None:
    """moto accepts any credentials, but boto3 needs some and a region to sign with."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@dataclass
class Services:
    """Where the PostgreSQL server and the S3 endpoint answer."""

    pg_url: str
    s3_endpoint: str

    def create_database(self) -> str:
        """A fresh, empty database on the server; its URL."""
        import psycopg

        name = f"as_{uuid.uuid4().hex[:12]}"
        dsn = self.pg_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.pg_url.rsplit("/", 1)[0] + f"/{name}"

    def blobs_url(self) -> str:
        """A fresh prefix in the test bucket, naming its endpoint so child processes need no env."""
        return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}?endpoint={self.s3_endpoint}"

    def make_store_dir(self, path: Path) -> Path:
        """A store folder pointing at a new database and a new blob prefix (``store.json``)."""
        path.mkdir(parents=True, exist_ok=True)
        (path / "store.json").write_text(
            json.dumps({"db": self.create_database(), "blobs": self.blobs_url()})
        )
        return path


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: python -m tests.services start|stop DIR", file=sys.stderr)
        return 2
    root = Path(argv[1]).resolve()
    if argv[0] == "stop":
        stop_moto(root / "moto")
        stop_postgres(root / "pg")
        return 0
    pg_url = start_postgres(root / "pg")
    s3 = start_moto(root / "moto")
    print(f"export {PG_ENV}={pg_url}")
    print(f"export {S3_ENV}={s3}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
