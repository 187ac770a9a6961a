"""The table of operations: every route comes from it, the policy holds on both transports,
bodies are refused (401/403/413) before they are read, and a new read (label counts) works
on both transports from one declaration."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from annostream import Forbidden, InvalidInput, NotFound, Project, Unauthorized
from annostream.client.transports import EmbeddedTransport, HttpTransport, connect
from annostream.errors import PayloadTooLarge
from annostream.operations import API_PREFIX, OPERATIONS
from annostream.server.app import create_app
from annostream.server.limits import BodyLimits
from annostream.store import Store


def _png(color: tuple[int, int, int] = (10, 20, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(buf, format="PNG")
    return buf.getvalue()


def _box(label: str) -> dict[str, Any]:
    return {"type": "box", "label": label, "geometry": {"x_min": 1, "y_min": 1, "x_max": 9, "y_max": 9}}


def test_importing_the_http_transport_loads_no_service_layer_and_no_sqlalchemy() -> None:
    code = (
        "import sys, annostream.client.transports.http\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'sqlalchemy'\n"
        "             or m.startswith(('annostream.service', 'annostream.store', 'annostream.server')))\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_declared_operation_is_exactly_one_route(tmp_path: Path) -> None:
    paths = create_app(Store.open(tmp_path / "store")).openapi()["paths"]
    signed = API_PREFIX + "/projects/{project}/blobs/{sha256}/signed"  # the Diffgram SDK's grant
    mounted = {
        (method.upper(), path)
        for path, methods in paths.items()
        if path.startswith(API_PREFIX) and path != signed
        for method in methods
    }
    declared = {(op.method, API_PREFIX + op.path) for op in OPERATIONS.values()}
    assert mounted == declared


# --- the new read: label counts, on both transports ------------------------------------------


def test_label_counts_equal_the_items_instances(project: Project) -> None:
    ds = project.dataset("Default")
    expected_files: Counter[str] = Counter()
    expected_instances: Counter[str] = Counter()
    for item, _ in project.transport.items(project.string_id, ds.ids.tolist(), ds.revision, False):
        labels = [i["label"] for i in item["instances"] if i["label"]]
        expected_instances.update(labels)
        expected_files.update(set(labels))
    counts = ds.label_counts()
    assert set(counts) == set(ds.labels)
    for name, got in counts.items():
        assert got == {"files": expected_files[name], "instances": expected_instances[name]}, name
    assert sum(c["instances"] for c in counts.values()) > 0
    cats = ds.slice("labels.cat >= 1")
    assert cats.label_counts()["cat"] == counts["cat"]
    assert cats.label_counts()["cat"]["files"] == len(cats)


_made = iter(range(10**6))


def _editor(kind: str, store_dir: Path, client: TestClient) -> Project:
    """A fresh private project with labels cat and dog, as its admin over ``kind``."""
    local = EmbeddedTransport(store_dir)
    name = f"ops-{next(_made)}-{kind}"
    admin = local.create_project(name, None, False)["admin_key"]
    for label in ("cat", "dog"):
        local.create_label(name, label, None)
    if kind == "http":
        transport = HttpTransport(
            str(client.base_url), admin["client_id"], admin["client_secret"], client=client
        )
        return Project(name, host=transport.host, transport=transport)
    return Project(name, host=f"file://{store_dir}")


@pytest.mark.parametrize("kind", ["http", "embedded"])
def test_label_counts_at_a_revision(
    kind: str, server_store: tuple[str, Path], server_client: TestClient
) -> None:
    p = _editor(kind, server_store[1], server_client)
    first = p.upload("Default", data=_png(), filename="a.png", instances=[_box("cat"), _box("cat")])
    p.upload("Default", data=_png((1, 2, 3)), filename="b.png", instances=[_box("cat"), _box("dog")])
    ds = p.dataset("Default")
    assert ds.label_counts() == {"cat": {"files": 2, "instances": 3}, "dog": {"files": 1, "instances": 1}}
    then = ds.as_of(first["revision"])
    assert then.label_counts() == {"cat": {"files": 1, "instances": 2}, "dog": {"files": 0, "instances": 0}}
    raw = p.transport.call("label_counts", project=p.string_id, dataset="Default", as_of=first["revision"])
    assert raw["revision"] == first["revision"] and [r["name"] for r in raw["labels"]] == ["cat", "dog"]
    with pytest.raises(InvalidInput, match="as_of"):
        p.transport.call("label_counts", project=p.string_id, dataset="Default", as_of=-1)
    with pytest.raises(NotFound, match="Nope"):
        p.transport.call("label_counts", project=p.string_id, dataset="Nope")


# --- policy, stated once, enforced on both transports ---------------------------------------


def test_an_embedded_store_opened_with_a_key_obeys_its_role(server_store: tuple[str, Path]) -> None:
    store_dir = server_store[1]
    owner = EmbeddedTransport(store_dir)
    owner.create_project("ops-policy", None, False)
    owner.create_project("ops-other", None, False)
    viewer = owner.create_key("ops-policy", "viewer")
    as_viewer = EmbeddedTransport(store_dir, viewer["client_id"], viewer["client_secret"])
    assert as_viewer.project("ops-policy")["role"] == "viewer"
    assert as_viewer.labels("ops-policy", None) == []
    with pytest.raises(Forbidden, match="needs 'editor'"):
        as_viewer.create_label("ops-policy", "cat", None)
    with pytest.raises(Forbidden):
        as_viewer.import_source("ops-policy", "Default", None, "json")
    with pytest.raises(Forbidden, match="ops-other"):
        as_viewer.labels("ops-other", None)
    with pytest.raises(Forbidden, match="server admin"):
        as_viewer.create_project("ops-mine", None, False)
    listed = as_viewer.list_projects()  # its own project, and public ones as anyone sees them
    assert "ops-policy" in [p["string_id"] for p in listed]
    assert all(p["string_id"] == "ops-policy" or p["is_public"] for p in listed)
    with pytest.raises(Unauthorized):
        EmbeddedTransport(store_dir, viewer["client_id"], "wrong").labels("ops-policy", None)
    via_url = connect(f"file://{store_dir}", viewer["client_id"], viewer["client_secret"])
    with pytest.raises(Forbidden):
        via_url.create_dataset("ops-policy", "train")
    assert owner.create_dataset("ops-policy", "train")["name"] == "train"


# --- bodies: decided on before they are read, capped per family ----------------------------


def _send_head(url: str, request_line: str, headers: dict[str, str]) -> str:
    """Send a request's head only (its body never follows) and return the status line."""
    where = urlparse(url)
    with socket.create_connection((where.hostname, where.port), timeout=20) as sock:
        head = request_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        sock.sendall(head.encode())
        return sock.recv(4096).decode(errors="replace").split("\r\n", 1)[0]


@pytest.mark.parametrize(
    "request_line,content_type",
    [
        ("PUT {p}/blobs HTTP/1.1", "application/octet-stream"),
        ("POST {p}/datasets/Default/files HTTP/1.1", "multipart/form-data; boundary=x"),
        ("POST {p}/datasets/Default/import:records HTTP/1.1", "application/x-ndjson"),
        ("POST {p}/labels HTTP/1.1", "application/json"),
    ],
)
def test_an_anonymous_body_to_a_private_project_is_refused_before_it_is_sent(
    server_store: tuple[str, Path], request_line: str, content_type: str
) -> None:
    url, store_dir = server_store
    if "ops-private" not in [p["string_id"] for p in EmbeddedTransport(store_dir).list_projects()]:
        EmbeddedTransport(store_dir).create_project("ops-private", None, False)
    line = request_line.format(p=API_PREFIX + "/projects/ops-private")
    status = _send_head(
        url, line, {"Host": "x", "Content-Type": content_type, "Content-Length": str(64 << 30)}
    )
    assert status.startswith("HTTP/1.1 401"), status


def test_a_declared_length_over_the_cap_is_413_before_the_body_is_sent(
    server_store: tuple[str, Path],
) -> None:
    url, store_dir = server_store
    local = EmbeddedTransport(store_dir)
    admin = local.create_project("ops-cap", None, False)["admin_key"]
    import base64

    auth = base64.b64encode(f"{admin['client_id']}:{admin['client_secret']}".encode()).decode()
    status = _send_head(
        url,
        f"PUT {API_PREFIX}/projects/ops-cap/blobs HTTP/1.1",
        {"Host": "x", "Authorization": f"Basic {auth}", "Content-Length": str(BodyLimits().upload + 1)},
    )
    assert status.startswith("HTTP/1.1 413"), status


def test_each_family_has_its_own_cap_and_the_documented_error_shape(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    local = EmbeddedTransport(tmp_path / "store")
    admin = local.create_project("caps", None, False)["admin_key"]
    limits = BodyLimits(json=2_000, upload=5_000, imports=8_000)
    with TestClient(create_app(store, limits=limits)) as client:
        auth = (admin["client_id"], admin["client_secret"])
        base = f"{API_PREFIX}/projects/caps"
        big = client.post(f"{base}/labels", json={"name": "x" * 3_000}, auth=auth)
        assert big.status_code == 413
        assert big.json() == {
            "error": {
                "code": "too_large",
                "message": "request body over the 2000 byte limit of json requests",
                "detail": {"limit": 2_000, "family": "json"},
            }
        }
        assert client.post(f"{base}/labels", json={"name": "cat"}, auth=auth).status_code == 201
        assert client.put(f"{base}/blobs", content=b"x" * 5_001, auth=auth).status_code == 413
        chunked = client.put(f"{base}/blobs", content=iter([b"x" * 4_000, b"x" * 4_000]), auth=auth)
        assert chunked.status_code == 413 and chunked.json()["error"]["detail"]["family"] == "upload"
        assert client.put(f"{base}/blobs", content=_png(), auth=auth).status_code == 201
        upload = client.post(
            f"{base}/datasets/Default/files", files={"file": ("a.png", b"x" * 6_000)}, auth=auth
        )
        assert upload.status_code == 413
        records = client.post(f"{base}/datasets/Default/import:records", content=b"{}\n" * 3_000, auth=auth)
        assert records.status_code == 413 and records.json()["error"]["detail"]["limit"] == 8_000
        sdk = HttpTransport(str(client.base_url), *auth, client=client)
        with pytest.raises(PayloadTooLarge, match="upload"):
            sdk.upload_file("caps", "Default", "a.png", b"x" * 6_000, [], {})
        assert sdk.upload_file("caps", "Default", "a.png", _png(), [_box("cat")], {})["instances"] == 1
