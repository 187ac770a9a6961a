"""Keys: revocation, listing without secrets, ``serve --init``, foreign keys on public
projects, the configured public URL, private files, closed CORS (issue 13)."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from annostream.client.transports import EmbeddedTransport
from annostream.server.launch import free_port, running_server
from annostream.server.signing import load_secret
from tests.security.conftest import World, basic

CLI = [sys.executable, "-m", "annostream.cli"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, check=False)


def test_a_revoked_key_is_refused_at_once_route(world: World) -> None:
    admin = basic(world.keys["priv:admin"])
    with world.client() as http:
        key = http.post("/api/v2/projects/priv/keys", json={"role": "viewer"}, headers=admin).json()
        assert http.get("/api/v2/projects/priv/datasets", headers=basic(key)).status_code == 200
        # an editor may not revoke; a foreign admin may not either
        for who in ("priv:editor", "other:admin"):
            r = http.delete(f"/api/v2/projects/priv/keys/{key['client_id']}", headers=basic(world.keys[who]))
            assert r.status_code == 403, r.text
        r = http.delete(f"/api/v2/projects/priv/keys/{key['client_id']}", headers=admin)
        assert r.status_code == 200 and r.json()["revoked_at"], r.text
        r = http.get("/api/v2/projects/priv/datasets", headers=basic(key))
        assert r.status_code == 401, r.text
        assert http.delete("/api/v2/projects/priv/keys/as_nosuchkey", headers=admin).status_code == 404


def test_a_revoked_key_is_refused_at_once_cli(world: World) -> None:
    key = EmbeddedTransport(world.store_dir).create_key("priv", "editor")
    with world.client() as http:
        assert http.get("/api/v2/projects/priv", headers=basic(key)).status_code == 200
        done = cli("keys", "revoke", key["client_id"], "--project", "priv", "--data", str(world.store_dir))
        assert done.returncode == 0, done.stderr
        assert key["client_id"] in done.stdout
        assert http.get("/api/v2/projects/priv", headers=basic(key)).status_code == 401


def test_keys_list_shows_ids_roles_and_use_never_secrets(world: World) -> None:
    with world.client() as http:
        http.get("/api/v2/projects/priv", headers=basic(world.keys["priv:viewer"]))
        r = http.get("/api/v2/projects/priv/keys", headers=basic(world.keys["priv:admin"]))
        assert r.status_code == 200, r.text
        assert (
            http.get("/api/v2/projects/priv/keys", headers=basic(world.keys["priv:editor"])).status_code
            == 403
        )
    listed = {k["client_id"]: k for k in r.json()}
    viewer = listed[world.keys["priv:viewer"]["client_id"]]
    assert viewer["role"] == "viewer" and viewer["created_at"] and viewer["last_used_at"]
    assert listed[world.keys["priv:revoked"]["client_id"]]["revoked_at"]
    assert world.keys["other:admin"]["client_id"] not in listed
    done = cli("keys", "list", "--project", "priv", "--data", str(world.store_dir))
    assert done.returncode == 0, done.stderr
    assert world.keys["priv:viewer"]["client_id"] in done.stdout
    for key in world.keys.values():
        assert key["client_secret"] not in r.text and key["client_secret"] not in done.stdout


def _serve_init(data: Path) -> tuple[str, str]:
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--data", str(data), "--port", str(port), "--init"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    return out, err


def test_serve_init_mints_one_key_into_a_private_file_and_never_prints_it(tmp_path: Path) -> None:
    data = tmp_path / "store"
    out, err = _serve_init(data)
    key_file = data / "server-admin.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    client_id, secret = key_file.read_text().strip().split(":")
    assert client_id in out and str(key_file) in out
    assert secret not in out and secret not in err
    out2, err2 = _serve_init(data)
    assert "none minted" in out2 and secret not in out2 + err2
    assert key_file.read_text().strip() == f"{client_id}:{secret}"
    with running_server(data) as url:
        r = httpx.post(
            f"{url}/api/v2/projects",
            json={"string_id": "made"},
            headers=basic({"client_id": client_id, "client_secret": secret}),
        )
        assert r.status_code == 201, r.text


def test_a_foreign_key_reads_public_projects_like_anyone(world: World) -> None:
    foreign = basic(world.keys["other:admin"])
    with world.client() as http:
        assert http.get("/api/v2/projects/pub/datasets", headers=foreign).status_code == 200
        assert http.get("/api/v2/projects/pub/datasets/Default/count", headers=foreign).json()["count"] >= 1
        assert (
            http.post("/api/v2/projects/pub/labels", json={"name": "x"}, headers=foreign).status_code == 403
        )
        assert http.get("/api/v2/projects/priv/datasets", headers=foreign).status_code == 403
        listed = {p["string_id"] for p in http.get("/api/v2/projects", headers=foreign).json()}
        assert listed == {"pub", "other"}


def _signed_url(http: httpx.Client, world: World, headers: dict[str, str]) -> str:
    r = http.post(
        "/api/project/pub/user/u/file/list",
        json={"metadata": {"file_view_mode": "base"}},
        headers={**basic(world.keys["pub:viewer"]), **headers},
    )
    assert r.status_code == 200, r.text
    return next(f["image"]["url_signed"] for f in r.json()["file_list"] if f.get("image"))


def test_signed_links_ignore_the_host_header(world: World) -> None:
    with world.client() as http:
        url = _signed_url(http, world, {"Host": "evil.example"})
    assert url.startswith(world.url + "/"), url
    assert httpx.get(url, follow_redirects=True).status_code == 200  # S3 answers with a redirect


@pytest.fixture(scope="module")
def configured(world: World) -> Iterator[str]:
    env = {
        "ANNOSTREAM_PUBLIC_URL": "https://data.example.com/base/",
        "ANNOSTREAM_CORS_ORIGINS": "https://app.example.com",
    }
    with running_server(world.store_dir, env=env) as url:
        yield url


def test_signed_links_use_the_configured_public_url(world: World, configured: str) -> None:
    with httpx.Client(base_url=configured) as http:
        url = _signed_url(http, world, {"Host": "evil.example"})
    assert url.startswith("https://data.example.com/base/api/v2/projects/pub/blobs/"), url


def test_cors_is_closed_by_default(world: World) -> None:
    with world.client() as http:
        r = http.options(
            "/api/v2/projects/pub/datasets",
            headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in r.headers
        r = http.get("/api/v2/projects/pub/datasets", headers={"Origin": "https://app.example.com"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_cors_opens_only_to_configured_origins(configured: str) -> None:
    with httpx.Client(base_url=configured) as http:
        pre = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
        r = http.options(
            "/api/v2/projects/pub/datasets", headers={"Origin": "https://app.example.com", **pre}
        )
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example.com"
        r = http.options("/api/v2/projects/pub/datasets", headers={"Origin": "https://evil.example", **pre})
        assert r.headers.get("access-control-allow-origin") != "https://evil.example"
        r = http.get("/api/v2/projects/pub/datasets", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers


def test_store_files_are_private(tmp_path: Path) -> None:
    """A local store (SQLite + blobs; the PostgreSQL stack keeps its data elsewhere)."""
    data = tmp_path / "fresh"
    local = EmbeddedTransport(data)
    local.create_project("p", None, False)
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG")
    local.upload_file("p", "Default", "a.png", buf.getvalue(), [], {})
    load_secret(data)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for path in data.rglob("*"):
        mode = stat.S_IMODE(path.lstat().st_mode)
        expected = 0o700 if path.is_dir() else 0o600
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
        assert mode == expected or path.suffix in ("-wal", "-shm"), f"{path} is {oct(mode)}"
    assert (data / "annostream.db").exists() and (data / "signing.key").exists()
    assert os.access(data / "annostream.db", os.R_OK)


def test_a_server_admin_key_can_be_revoked_locally(tmp_path: Path) -> None:
    from annostream.service.projects import create_server_admin_key

    data = tmp_path / "store"
    local = EmbeddedTransport(data, create=True)
    key = create_server_admin_key(local.store)
    with running_server(data) as url:
        assert httpx.get(f"{url}/api/v2/projects", headers=basic(key)).status_code == 200
        listed = cli("keys", "list", "--data", str(data))
        assert key["client_id"] in listed.stdout and key["client_secret"] not in listed.stdout
        done = cli("keys", "revoke", key["client_id"], "--data", str(data))
        assert done.returncode == 0, done.stderr
        assert httpx.get(f"{url}/api/v2/projects", headers=basic(key)).status_code == 401
    refused = cli("keys", "revoke", key["client_id"], "--host", url)
    assert refused.returncode != 0
