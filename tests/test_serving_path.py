"""The hot serving path (items:batch with inline blobs), over real server processes.

A key is read from the store by every request in the same statement as the project, with no
cache: a key revoked anywhere is refused by the very next request to every server process.
A framed reply has a Content-Length and carries each blob whole; a blob whose bytes on disk
are not as long as the store records cuts the reply short, so the client never takes a
short blob (it fetches again, then fails), and the server keeps serving.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from annostream import frames
from annostream.client.retry import Corrupt, Retry
from annostream.client.transports import EmbeddedTransport, HttpTransport
from annostream.errors import AnnostreamError
from annostream.server.launch import running_server
from tests.conftest import Source, make_coco


def _statuses(url: str, key: dict[str, str], ids: list[int]) -> list[tuple[int, int]]:
    """(items:batch status, dataset listing status) over 16 fresh connections each, so the
    requests spread over every server process."""
    auth = (key["client_id"], key["client_secret"])

    def one(_: int) -> tuple[int, int]:
        batch = httpx.post(
            f"{url}/api/v2/projects/alpha/items:batch", json={"ids": ids, "blobs": "inline"}, auth=auth
        )
        listing = httpx.get(f"{url}/api/v2/projects/alpha/datasets", auth=auth)
        return batch.status_code, listing.status_code

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(16)))


def test_revoked_key_is_refused_at_once_by_every_worker(
    tmp_path: Path, new_store_dir: Callable[[Path], Path]
) -> None:
    store_dir = new_store_dir(tmp_path / "store")
    local = EmbeddedTransport(store_dir, create=True)
    local.create_project("alpha", None, False)
    local.create_dataset("alpha", "Default")
    image = make_coco(tmp_path / "coco", 1).parent / "images"
    path = next(image.iterdir())
    file_id = local.upload_file("alpha", "Default", path.name, path.read_bytes(), [], {})["id"]
    viewer = local.create_key("alpha", "viewer")
    with running_server(store_dir, workers=2) as url:
        pids: set[int] = set()
        deadline = time.monotonic() + 30
        while len(pids) < 2 and time.monotonic() < deadline:
            with ThreadPoolExecutor(8) as pool:
                pids |= set(pool.map(lambda _: httpx.get(f"{url}/healthz").json()["pid"], range(16)))
        assert len(pids) == 2, "two server processes answer on one port"
        assert set(_statuses(url, viewer, [file_id])) == {(200, 200)}  # used by both, just now
        local.revoke_key("alpha", viewer["client_id"])
        assert set(_statuses(url, viewer, [file_id])) == {(401, 401)}


def test_framed_reply_has_a_length_and_whole_blobs(source: Source) -> None:
    key = source.viewer
    auth = (key["client_id"], key["client_secret"])
    ids, _ = HttpTransport(source.url, key["client_id"], key["client_secret"]).ids(
        "coco-dataset", "Default", None, None
    )
    reply = httpx.post(
        f"{source.url}/api/v2/projects/coco-dataset/items:batch",
        json={"ids": ids.tolist(), "blobs": "inline"},
        auth=auth,
    )
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith(frames.MEDIA_TYPE)
    assert int(reply.headers["content-length"]) == len(reply.content)
    pairs = list(frames.decode(reply.content))
    assert [item["id"] for item, _ in pairs] == ids.tolist()
    for item, blob in pairs:
        assert blob == (source.images_dir / item["file"]["name"]).read_bytes()


@pytest.mark.parametrize(
    "damage", [lambda data: data[:-100], lambda data: data + bytes(100)], ids=["short", "long"]
)
def test_blob_not_as_long_on_disk_as_recorded_is_never_served(
    tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    store_dir = tmp_path / "store"
    local = EmbeddedTransport(store_dir, create=True)
    local.create_project("alpha", None, False)
    local.create_dataset("alpha", "Default")
    images = make_coco(tmp_path / "coco", 3).parent / "images"
    ids = [
        local.upload_file("alpha", "Default", p.name, p.read_bytes(), [], {})["id"]
        for p in sorted(images.iterdir())
    ]
    viewer = local.create_key("alpha", "viewer")
    (item, _), *_ = local.items("alpha", ids[1:2], None, False)
    sha = item["file"]["sha256"]
    blob = store_dir / "blobs" / sha[:2] / sha[2:4] / sha
    blob.write_bytes(damage(blob.read_bytes()))  # damaged on disk, behind the store's back
    with running_server(store_dir) as url:
        transport = HttpTransport(url, viewer["client_id"], viewer["client_secret"], retry=Retry(tries=2))
        with pytest.raises((AnnostreamError, Corrupt, httpx.HTTPError)):
            transport.items("alpha", ids, None, True)
        # The other files are served whole, by the same process.
        served = transport.items("alpha", [ids[0], ids[2]], None, True)
        assert [item["id"] for item, _ in served] == [ids[0], ids[2]]
        for item, data in served:
            assert data is not None and hashlib.sha256(data).hexdigest() == item["file"]["sha256"]


def test_batch_route_answers_as_every_route_does(
    tmp_path: Path, new_store_dir: Callable[[Path], Path]
) -> None:
    """``items:batch`` is answered before FastAPI's router (server/hot.py): its refusals keep
    the shapes and order of every route's, what it does not match still reaches the router,
    and a batch at head sees a commit made since the previous request."""
    store_dir = new_store_dir(tmp_path / "store")
    local = EmbeddedTransport(store_dir, create=True)
    for name in ("alpha", "beta"):
        local.create_project(name, None, False)
        local.create_dataset(name, "Default")
    images = sorted((make_coco(tmp_path / "coco", 2).parent / "images").iterdir())
    first = local.upload_file("alpha", "Default", images[0].name, images[0].read_bytes(), [], {})["id"]
    viewer = local.create_key("alpha", "viewer")
    other = local.create_key("beta", "viewer")
    auth = (viewer["client_id"], viewer["client_secret"])
    with running_server(store_dir, env={"ANNOSTREAM_MAX_JSON_BYTES": "4096"}) as url:
        batch = f"{url}/api/v2/projects/alpha/items:batch"

        def error(reply: httpx.Response, status: int, code: str) -> dict[str, object]:
            assert reply.status_code == status, reply.text
            body: dict[str, object] = reply.json()["error"]
            assert body["code"] == code
            return body

        anonymous = httpx.post(batch, json={"ids": [first]})
        error(anonymous, 401, "unauthorized")
        assert "Basic" in anonymous.headers["www-authenticate"]
        error(httpx.post(batch, json={"ids": [first]}, auth=("as_nokey", "wrong")), 401, "unauthorized")
        error(
            httpx.post(batch, json={"ids": [first]}, auth=(other["client_id"], other["client_secret"])),
            403,
            "forbidden",
        )
        missing = httpx.post(f"{url}/api/v2/projects/nope/items:batch", json={"ids": [first]}, auth=auth)
        error(missing, 404, "not_found")
        assert error(httpx.post(batch, json={"ids": "x"}, auth=auth), 422, "invalid")["detail"] == {
            "field": "ids"
        }
        error(httpx.post(batch, json={"ids": [first], "as_of": 99}, auth=auth), 404, "not_found")
        error(httpx.post(batch, json={"ids": [first + 1000]}, auth=auth), 404, "not_found")
        error(httpx.post(batch, json={"ids": list(range(2000))}, auth=auth), 413, "too_large")
        for huge, field in (({"ids": [2**63]}, "ids.0"), ({"ids": [first], "as_of": 2**31}, "as_of")):
            assert error(httpx.post(batch, json=huge, auth=auth), 422, "invalid")["detail"] == {
                "field": field
            }
        malformed = httpx.post(
            batch, content=b'{"ids": [1,', headers={"content-type": "application/json"}, auth=auth
        )
        assert error(malformed, 422, "invalid")["detail"] == {"field": "body"}
        # Not matched here, answered by the router as before.
        wrong_method = httpx.get(batch, auth=auth)
        error(wrong_method, 405, "method_not_allowed")
        assert "POST" in wrong_method.headers["allow"]
        doubled = httpx.post(f"{url}//api/v2/projects/alpha/items:batch", json={"ids": [first]}, auth=auth)
        assert doubled.status_code == 200
        assert [i["id"] for i in doubled.json()["items"]] == [first]
        second = local.upload_file("alpha", "Default", images[1].name, images[1].read_bytes(), [], {})["id"]
        fresh = httpx.post(batch, json={"ids": [first, second]}, auth=auth)
        assert fresh.status_code == 200
        assert [i["id"] for i in fresh.json()["items"]] == [first, second]
        assert int(fresh.headers["x-revision"]) == fresh.json()["revision"] > doubled.json()["revision"]
