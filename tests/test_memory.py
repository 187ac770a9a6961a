"""Reading a large dataset keeps the SDK's cache within its byte budget."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

from PIL import Image

from annostream import Project
from annostream.client.transports import EmbeddedTransport
from annostream.formats import ImportSource
from annostream.server.launch import running_server
from annostream.service import imports
from annostream.service.projects import LOCAL, authorize
from tests.conftest import Source

# The dataset's bytes are about three budgets (as 20k items were to 512 KiB), so the pass
# evicts and fills the cache many times over.
N_ITEMS = 8_000
BUDGET = 200 * 1024


def _build(store_dir: Path) -> None:
    """8k distinct tiny PNGs with one box each, imported as one commit."""
    local = EmbeddedTransport(store_dir)
    local.create_project("big", None, True)
    records = []
    for i in range(N_ITEMS):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (i % 256, (i // 256) % 256, i // 65536)).save(buf, format="PNG")
        box = {"type": "box", "label": "dot", "geometry": {"x_min": 1, "y_min": 1, "x_max": 5, "y_max": 5}}
        records.append(
            {
                "where": f"image {i}",
                "name": f"{i}.png",
                "data": buf.getvalue(),
                "metadata": {"coco_id": i},
                "instances": [box],
                "width": 8,
                "height": 8,
            }
        )
    ref = authorize(local.store, LOCAL, "big", "editor")
    imports.import_source(
        local.store, ref, "Default", ImportSource([{"name": "dot"}], [], iter(records), N_ITEMS)
    )


def test_iterating_8k_items_stays_within_the_cache_budget(tmp_path: Path) -> None:
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
            ds.fetch(ids[start : start + 256])
            assert project.cache.nbytes <= BUDGET
        assert project.cache.peak_bytes <= BUDGET
        assert project.cache.evictions > 0, "the budget was actually exercised"
        assert project.cache.peak_bytes > BUDGET // 2


def test_disk_cache_keeps_blobs_across_epochs_within_its_budget(source: Source, tmp_path: Path) -> None:
    v = source.viewer
    plain = Project("coco-dataset", v["client_id"], v["client_secret"], host=source.url)
    want = [(s["file"]["name"], s["image"]) for s in plain.dataset("Default", decode=None)]
    total = sum(len(blob) for _, blob in want)

    cached = Project(
        "coco-dataset", v["client_id"], v["client_secret"], host=source.url, disk_cache=tmp_path / "blobs"
    )
    ds = cached.dataset("Default", decode=None)
    assert [(s["file"]["name"], s["image"]) for s in ds] == want
    disk = cached.disk_cache
    assert disk is not None and disk.misses == len(want) and disk.nbytes == total
    assert [(s["file"]["name"], s["image"]) for s in ds] == want
    assert disk.hits == len(want), "the second epoch took every blob from disk"
    shipped = pickle.loads(pickle.dumps(ds))  # as DataLoader workers receive it
    assert shipped.project.disk_cache.nbytes == total
    assert [(s["file"]["name"], s["image"]) for s in shipped] == want
    assert shipped.project.disk_cache.hits == len(want)

    damaged = next((tmp_path / "blobs").glob("??/*"))
    damaged.write_bytes(b"not the blob")
    again = Project(
        "coco-dataset", v["client_id"], v["client_secret"], host=source.url, disk_cache=tmp_path / "blobs"
    )
    assert [(s["file"]["name"], s["image"]) for s in again.dataset("Default", decode=None)] == want
    assert again.disk_cache is not None and again.disk_cache.misses == 1, "a damaged file is a miss"

    small = Project(
        "coco-dataset",
        v["client_id"],
        v["client_secret"],
        host=source.url,
        disk_cache=tmp_path / "small",
        disk_cache_bytes=total // 3,
    )
    assert [(s["file"]["name"], s["image"]) for s in small.dataset("Default", decode=None)] == want
    assert small.disk_cache is not None and 0 < small.disk_cache.nbytes <= total // 3
    on_disk = sum(p.stat().st_size for p in (tmp_path / "small").glob("??/*"))
    assert on_disk == small.disk_cache.nbytes
