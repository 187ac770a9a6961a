"""Metadata figures: first batch vs export-then-load, peak memory, query latency, items/s.

Peak memory is measured in a fresh child process per case (``ru_maxrss`` of that child),
so one case's allocations never inflate another's.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from annostream import Project


def _project(url: str, project: str, key: dict[str, Any] | None) -> Project:
    if key is None:
        return Project(project, host=url)
    return Project(project, key["client_id"], key["client_secret"], host=url)


def first_batch(url: str, project: str, key: dict[str, Any] | None) -> float:
    """Seconds from nothing to the first batch of samples in hand (connect, ids, one batch)."""
    t0 = time.perf_counter()
    ds = _project(url, project, key).dataset("Default")
    it = iter(ds)
    for _ in range(ds.batch_size):
        next(it)
    return time.perf_counter() - t0


def write_export(url: str, project: str, key: dict[str, Any] | None, out: Path) -> Path:
    """The dataset's COCO export (annotations only), written through the SDK; its JSON path."""
    _project(url, project, key).dataset("Default").export(out, format="coco", images=False)
    return out / "annotations.json"


def load_export(path: Path) -> list[dict[str, Any]]:
    """What a user does with an export: ``json.load`` it and build per-image samples."""
    import numpy as np

    with path.open() as fh:
        coco = json.load(fh)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    by_image: dict[int, list[dict[str, Any]]] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    samples = []
    for image in coco["images"]:
        anns = by_image.get(image["id"], [])
        boxes = np.array(
            [
                [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                for a in anns
            ],
            dtype=np.float32,
        ).reshape(-1, 4)
        samples.append(
            {
                "file": image,
                "instances": anns,
                "boxes": boxes,
                "labels": [names[a["category_id"]] for a in anns],
            }
        )
    return samples


def export_then_load(url: str, project: str, key: dict[str, Any] | None, out: Path) -> tuple[float, Path]:
    """Seconds to export the dataset, load the export and build samples; and the JSON path."""
    t0 = time.perf_counter()
    path = write_export(url, project, key, out)
    load_export(path)
    return time.perf_counter() - t0, path


def _stream_all(url: str, project: str, key: dict[str, Any] | None) -> int:
    n = 0
    for sample in _project(url, project, key).dataset("Default"):
        n += len(sample["instances"])
    return n


def peak_rss_child() -> None:
    """Child entry: ``stream URL PROJECT KEYJSON`` or ``load PATH``; prints peak RSS (bytes)."""
    mode = sys.argv[2]
    if mode == "stream":
        _stream_all(sys.argv[3], sys.argv[4], json.loads(sys.argv[5]))
    else:
        load_export(Path(sys.argv[3]))
    print(_high_water_mark())


def _high_water_mark() -> int:
    """This process's peak resident set (``VmHWM``; ``ru_maxrss`` survives exec from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_rss(*args: str) -> int:
    """Peak RSS in bytes of a child running one case."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.meta", "rss", *args], check=True, capture_output=True, text=True
    ).stdout
    return int(out.strip().splitlines()[-1])


def query_latency(url: str, project: str, key: dict[str, Any] | None, query: str) -> dict[str, float]:
    """Seconds to the first item of a slice and to its count (each on a fresh project handle)."""
    proj = _project(url, project, key)
    ds = proj.dataset("Default")
    t0 = time.perf_counter()
    next(iter(ds.slice(query)))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds.slice(query).count()
    count = time.perf_counter() - t0
    return {"first_item": first, "count": count}


def items_rate(url: str, project: str, key: dict[str, Any] | None, limit: int) -> float:
    """Samples per second iterating the dataset's metadata (no images)."""
    ds = _project(url, project, key).dataset("Default")[:limit]
    t0 = time.perf_counter()
    n = sum(1 for _ in ds)
    return n / (time.perf_counter() - t0)


if __name__ == "__main__" and sys.argv[1] == "rss":
    peak_rss_child()
