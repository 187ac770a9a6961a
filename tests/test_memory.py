"""Reading a large dataset keeps the SDK's cache within its byte budget."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from annostream import Project
from annostream.client.transport import EmbeddedTransport
from annostream.server.launch import running_server
from annostream.service import ingest
from annostream.service.projects import LOCAL, authorize

N_ITEMS = 20_000
BUDGET = 512 * 1024


def _build(store_dir: Path) -> None:
    """20k distinct tiny PNGs with one box each, imported as one COCO commit."""
    local = EmbeddedTransport(store_dir)
    local.create_project("big", None, True)
    blobs: dict[str, bytes] = {}
    images, annotations = [], []
    for i in range(N_ITEMS):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (i % 256, (i // 256) % 256, i // 65536)).save(buf, format="PNG")
        name = f"{i}.png"
        blobs[name] = buf.getvalue()
        images.append({"id": i, "file_name": name, "width": 8, "height": 8})
        annotations.append({"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 4, 4]})
    coco = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "dot"}]}
    ref = authorize(local.store, LOCAL, "big", "editor")
    ingest.import_coco(local.store, ref, "Default", coco, lambda img: blobs[img["file_name"]])


def test_iterating_20k_items_stays_within_the_cache_budget(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    _build(store_dir)
    with running_server(store_dir) as url:
        project = Project("big", host=url, cache_bytes=BUDGET)
        ds = project.dataset("Default", batch_size=256, prefetch=4, decode=None)
        n, colors = 0, set()
        for sample in ds:
            n += 1
            assert project.cache.nbytes <= BUDGET
            if n % 997 == 0:
                colors.add(Image.open(io.BytesIO(sample["image"])).getpixel((0, 0)))
        assert n == N_ITEMS
        assert len(colors) == len(range(997, N_ITEMS + 1, 997)), "every sampled item is a different image"
        assert project.cache.nbytes == 0, "a sequential pass reads the cache but does not fill it"
        ids = ds.ids.tolist()
        for start in range(0, N_ITEMS, 256):
            ds.fetch(ids[start:start + 256])
            assert project.cache.nbytes <= BUDGET
        assert project.cache.peak_bytes <= BUDGET
        assert project.cache.evictions > 0, "the budget was actually exercised"
        assert project.cache.peak_bytes > BUDGET // 2
