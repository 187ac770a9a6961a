"""Shared fixtures: real stores on disk, a real server process on loopback, real images.

``project`` is parametrised over both transports, so every streaming test runs over HTTP
and against the embedded store, unchanged; its HTTP side is the app in this process (an
injected ``TestClient``), while ``wire_project`` reaches a real server process on loopback
(the wire boundary: streaming, multi-process readers). ``source`` and ``server_store``
are parametrised over both stacks (``stack``: SQLite + local blobs, PostgreSQL + S3), so
everything built on them runs on both.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from annostream import Project
from annostream.client.transports import EmbeddedTransport, HttpTransport
from annostream.formats.coco import read_coco
from annostream.server.launch import running_server
from tests import services as svc

CATEGORIES = [
    {"id": 1, "name": "cat", "supercategory": "animal"},
    {"id": 2, "name": "dog", "supercategory": "animal"},
    {"id": 3, "name": "traffic light", "supercategory": "street"},
    {
        "id": 4,
        "name": "person",
        "supercategory": "person",
        "keypoints": ["nose", "left_eye", "right_eye"],
        "skeleton": [[1, 2], [1, 3]],
    },
]


def make_coco(out: Path, n_images: int, seed: int = 0, fmt: str = "JPEG") -> Path:
    """Random real images (Pillow) with boxes, polygons and keypoints drawn from the same rng."""
    rng = random.Random(seed)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(1, n_images + 1):
        w, h = rng.randint(48, 96), rng.randint(40, 80)
        img = Image.new("RGB", (w, h), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
        draw = ImageDraw.Draw(img)
        name = f"img_{i:05d}.{'jpg' if fmt == 'JPEG' else 'png'}"
        for _ in range(rng.randint(0, 4)):
            cat = rng.choice(CATEGORIES)
            x0, y0 = rng.uniform(0, w - 10), rng.uniform(0, h - 10)
            x1, y1 = rng.uniform(x0 + 2, w), rng.uniform(y0 + 2, h)
            draw.rectangle([x0, y0, x1, y1], outline=(255, 0, 0))
            ann: dict[str, Any] = {
                "id": len(annotations) + 1,
                "image_id": i,
                "category_id": cat["id"],
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": (x1 - x0) * (y1 - y0),
                "iscrowd": 0,
            }
            kind = rng.random()
            if cat.get("keypoints"):
                kps = []
                for _ in cat["keypoints"]:
                    kps += [rng.uniform(x0, x1), rng.uniform(y0, y1), rng.choice([0, 1, 2])]
                ann["keypoints"] = kps
                ann["num_keypoints"] = sum(1 for v in kps[2::3] if v)
                if all(v == 0 for v in kps[2::3]):
                    ann["keypoints"][2] = 2
                    ann["num_keypoints"] = 1
            elif kind < 0.4:
                ann["segmentation"] = [[x0, y0, x1, y0, x1, y1, x0, y1, (x0 + x1) / 2, (y0 + y1) / 2]]
            annotations.append(ann)
        img.save(images_dir / name, format=fmt)
        images.append({"id": i, "file_name": name, "width": w, "height": h})
    path = out / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return path


def blob_names(store_dir: Path) -> list[str]:
    """The names (sha256) of every blob a store folder's blob store holds, on either stack."""
    from annostream.store import BLOBS_DIRNAME, POINTER_FILENAME
    from annostream.store.s3 import S3BlobStore

    pointer = store_dir / POINTER_FILENAME
    if not pointer.is_file():
        return sorted(p.name for p in (store_dir / BLOBS_DIRNAME).rglob("*") if p.is_file())
    blobs = S3BlobStore.from_url(json.loads(pointer.read_text())["blobs"])
    pages = blobs.client.get_paginator("list_objects_v2").paginate(
        Bucket=blobs.bucket, Prefix=blobs.prefix + "/"
    )
    return sorted(obj["Key"].rsplit("/", 1)[-1] for page in pages for obj in page.get("Contents", []))


@dataclass
class Source:
    """A COCO dataset on disk, as imported, with a store and a server serving it."""

    coco: dict[str, Any]
    images_dir: Path
    store_dir: Path
    url: str
    admin: dict[str, str]
    viewer: dict[str, str]


@pytest.fixture(scope="session")
def services() -> Iterator[svc.Services]:
    """PostgreSQL and an S3 endpoint: CI's (environment), else started here, else a skip.

    With ``ANNOSTREAM_REQUIRE_PG=1`` (CI) a missing service is an error, never a skip.
    """
    pg_url, s3 = os.environ.get(svc.PG_ENV), os.environ.get(svc.S3_ENV)
    started: list[Path] = []
    try:
        if not pg_url or not s3:
            root = Path(tempfile.mkdtemp(prefix="annostream-services-"))
            root.chmod(0o755)  # the postgres user must reach its data directory inside
            started.append(root)
            pg_url = pg_url or svc.start_postgres(root / "pg")
            s3 = s3 or svc.start_moto(root / "moto")
    except (FileNotFoundError, RuntimeError, TimeoutError) as exc:
        for root in started:
            svc.stop_postgres(root / "pg")
        if os.environ.get("ANNOSTREAM_REQUIRE_PG") == "1":
            raise
        pytest.skip(f"PostgreSQL+S3 stack unavailable ({exc}); set {svc.PG_ENV} and {svc.S3_ENV}")
    svc.use_fake_aws_credentials()
    yield svc.Services(pg_url, s3)
    for root in started:
        svc.stop_moto(root / "moto")
        svc.stop_postgres(root / "pg")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session", params=["sqlite", "pg"])
def stack(request: pytest.FixtureRequest) -> str:
    """Which engines a store runs on: SQLite + local blobs, or PostgreSQL + S3 (moto)."""
    if request.param == "pg":
        request.getfixturevalue("services")
    return request.param


@pytest.fixture(scope="session")
def new_store_dir(stack: str, request: pytest.FixtureRequest) -> Callable[[Path], Path]:
    """Make a store folder on the current stack (a ``store.json`` pointer for PostgreSQL+S3)."""

    def make(path: Path) -> Path:
        if stack == "pg":
            return request.getfixturevalue("services").make_store_dir(path)
        return path

    return make


@pytest.fixture(scope="session")
def source(
    tmp_path_factory: pytest.TempPathFactory, new_store_dir: Callable[[Path], Path]
) -> Iterator[Source]:
    root = tmp_path_factory.mktemp("source")
    ann = make_coco(root / "coco", 40, seed=1)
    store_dir = new_store_dir(root / "store")
    local = EmbeddedTransport(store_dir)
    admin = local.create_project("coco-dataset", None, False)["admin_key"]
    coco = json.loads(ann.read_text())
    local.import_source("coco-dataset", "Default", read_coco(coco, root / "coco" / "images"), "coco")
    viewer = local.create_key("coco-dataset", "viewer")
    with running_server(store_dir) as url:
        yield Source(coco, root / "coco" / "images", store_dir, url, admin, viewer)


@pytest.fixture(scope="session")
def asgi_client(source: Source) -> Iterator[Any]:
    """An httpx client over the app serving ``source``'s store, in this process (no socket)."""
    from fastapi.testclient import TestClient

    from annostream.server.app import create_app
    from annostream.store import Store

    with TestClient(create_app(Store.open(source.store_dir))) as client:
        yield client


@pytest.fixture(params=["http", "embedded"])
def project(request: pytest.FixtureRequest, source: Source) -> Project:
    """The imported project over HTTP with a viewer key (the ASGI app in this process), or embedded."""
    if request.param == "http":
        client = request.getfixturevalue("asgi_client")
        key = source.viewer
        transport = HttpTransport(str(client.base_url), key["client_id"], key["client_secret"], client=client)
        return Project("coco-dataset", host=transport.host, transport=transport)
    return Project("coco-dataset", host=f"file://{source.store_dir}")


@pytest.fixture(params=["http", "embedded"])
def wire_project(request: pytest.FixtureRequest, source: Source) -> Project:
    """The imported project through a real server process with a viewer key, or embedded."""
    if request.param == "http":
        return Project(
            "coco-dataset", source.viewer["client_id"], source.viewer["client_secret"], host=source.url
        )
    return Project("coco-dataset", host=f"file://{source.store_dir}")


@pytest.fixture(scope="session")
def server_client(server_store: tuple[str, Path]) -> Iterator[Any]:
    """An httpx client over the app serving ``server_store``'s store, in this process."""
    from fastapi.testclient import TestClient

    from annostream.server.app import create_app
    from annostream.store import Store

    with TestClient(create_app(Store.open(server_store[1]))) as client:
        yield client


@pytest.fixture(scope="session")
def server_store(
    tmp_path_factory: pytest.TempPathFactory, new_store_dir: Callable[[Path], Path]
) -> Iterator[tuple[str, Path]]:
    """An empty store with a server, for tests that write (auth, bad input)."""
    store_dir = new_store_dir(tmp_path_factory.mktemp("writable") / "store")
    EmbeddedTransport(store_dir, create=True).list_projects()  # an explicit, empty store
    with running_server(store_dir) as url:
        yield url, store_dir
