"""Scale-out: several server processes behind one port, PostgreSQL + S3, presigned redirects."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import httpx
import orjson
import psutil
import pytest

from annostream import Project
from annostream.client.transports import HttpTransport
from annostream.schema import ProjectCreate, validate
from annostream.server.launch import running_server
from annostream.service.projects import LOCAL, create_project
from annostream.store import Store
from annostream.store.s3 import MULTIPART_THRESHOLD, S3BlobStore
from tests.conftest import Source
from tests.services import Services


def _stream(url: str, source: Source) -> list[tuple[bytes, bytes | None]]:
    """One client's whole pass over the dataset: (item JSON, blob bytes) in stream order."""
    project = Project("coco-dataset", source.viewer["client_id"], source.viewer["client_secret"], host=url)
    ds = project.dataset("Default").with_options(batch_size=4, prefetch=4)
    return [(orjson.dumps(item, option=orjson.OPT_SORT_KEYS), blob) for item, blob in ds.iter_raw()]


def test_two_processes_one_port_four_clients(source: Source) -> None:
    """Every client gets every item exactly once, and all four see identical samples."""
    with running_server(source.store_dir, workers=2) as url:
        assert len(_answering_workers(url)) == 2, "two server processes answer on one port"
        with ThreadPoolExecutor(4) as pool:
            runs = list(pool.map(lambda _: _stream(url, source), range(4)))
    expected_names = sorted(img["file_name"] for img in source.coco["images"])
    for run in runs:
        names = [orjson.loads(item)["file"]["name"] for item, _ in run]
        assert sorted(names) == expected_names  # all of them, each exactly once
        assert run == runs[0]
    for item, blob in runs[0]:
        name = orjson.loads(item)["file"]["name"]
        assert blob == (source.images_dir / name).read_bytes()


def _answering_workers(url: str) -> set[int]:
    """The pids answering /healthz, polled until every worker of the supervisor has answered.

    A worker may still be starting on a loaded machine: the wait is on that condition (bounded
    by the test timeout), not on a fixed window; a worker that dies meanwhile fails at once.
    """

    def pid(_: int) -> int:
        return int(httpx.get(f"{url}/healthz", timeout=60).json()["pid"])  # a loaded machine is slow

    first = pid(0)
    supervisor = psutil.Process(first).parent()
    assert supervisor is not None
    workers = {p.pid for p in supervisor.children() if "spawn_main" in " ".join(p.cmdline())}
    pids = {first}
    while pids < workers:
        with ThreadPoolExecutor(8) as pool:  # fresh connections, spread over the workers
            pids |= set(pool.map(pid, range(16)))
        alive = {p.pid for p in supervisor.children()}
        assert workers <= alive, f"a server worker exited while starting: {workers - alive}"
        time.sleep(0.1)
    assert pids == workers, "only the supervisor's workers answer"
    return pids


@pytest.mark.parametrize("stack", ["pg"], indirect=True)
def test_blob_route_redirects_to_presigned_s3_without_our_key(source: Source, services: Services) -> None:
    """307 to the object store; the SDK follows it without sending Authorization there."""
    transport = HttpTransport(source.url, source.viewer["client_id"], source.viewer["client_secret"])
    seen: list[httpx.Request] = []
    transport.client.event_hooks["request"].append(seen.append)
    item, _ = transport.items("coco-dataset", [1], None, blobs=False)[0]
    sha = item["file"]["sha256"]
    seen.clear()
    data = transport.blob("coco-dataset", sha)
    assert data == (source.images_dir / item["file"]["name"]).read_bytes()
    api, s3 = seen
    assert urlparse(str(api.url)).port == urlparse(source.url).port and "authorization" in api.headers
    assert urlparse(str(s3.url)).port == urlparse(services.s3_endpoint).port
    assert "X-Amz-Signature" in str(s3.url) and "authorization" not in s3.headers
    raw = httpx.get(
        f"{source.url}/api/v2/projects/coco-dataset/blobs/{sha}",
        auth=(source.viewer["client_id"], source.viewer["client_secret"]),
    )
    assert raw.status_code == 307 and raw.headers["etag"] == f'"{sha}"'
    denied = httpx.get(f"{source.url}/api/v2/projects/coco-dataset/blobs/{sha}")
    assert denied.status_code == 401, "no key, no presigned URL"


def test_s3_backend_multipart_and_lifecycle(services: Services) -> None:
    """A blob over the multipart threshold goes up in parts and comes back byte for byte."""
    blobs = S3BlobStore.from_url(services.blobs_url())
    big = os.urandom(MULTIPART_THRESHOLD + (3 << 20))
    sha, new = blobs.put(big)
    assert new and blobs.exists(sha) and blobs.local_path(sha) is None
    head = blobs.client.head_object(Bucket=blobs.bucket, Key=blobs.key(sha))
    assert head["ETag"].strip('"').endswith("-2"), "uploaded as a two-part multipart upload"
    assert blobs.put(big) == (sha, False)
    assert blobs.get(sha) == big
    small, _ = blobs.put(b"tiny")
    assert list(blobs.get_many([small, sha, small])) == [b"tiny", big, b"tiny"]
    blobs.delete(sha)
    assert not blobs.exists(sha)
    with pytest.raises(FileNotFoundError):
        blobs.get(sha)
    assert S3BlobStore.from_url(services.blobs_url() + "&redirect=0").presigned_url(small) is None


def test_serve_from_environment_urls(services: Services, tmp_path: Path) -> None:
    """``ANNOSTREAM_DB`` / ``ANNOSTREAM_BLOBS`` (what ``serve --db/--blobs`` sets) select the engines."""
    db, blob_url = services.create_database(), services.blobs_url()
    store = Store.open(db_url=db.replace("postgresql+psycopg://", "postgresql://"), blobs_url=blob_url)
    try:
        admin = create_project(store, LOCAL, validate(ProjectCreate, {"string_id": "envy"}))["admin_key"]
    finally:
        store.close()
    env = {"ANNOSTREAM_DB": db, "ANNOSTREAM_BLOBS": blob_url}
    with running_server(tmp_path / "unused", env=env) as url:
        project = Project("envy", admin["client_id"], admin["client_secret"], host=url)
        payload = _tiny_png()
        made = project.upload("Default", data=payload, filename="x.png")
        assert (
            HttpTransport(url, admin["client_id"], admin["client_secret"]).blob("envy", made["sha256"])
            == payload
        )
    assert (tmp_path / "unused").is_dir() and not (tmp_path / "unused" / "annostream.db").exists()


def _tiny_png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (1, 2, 3)).save(buf, format="PNG")
    return buf.getvalue()
