"""The benchmark's data: real photographs (as in ``make demo``) and synthetic metadata.

Images come from :func:`annostream.demo.build_photo_coco` (crops of scikit-image's sample
photos), imported into a store through the service like any COCO file. The metadata-only
stores (100k files / 1M instances) are written with bulk inserts in one commit, the way an
import would land them (derived tables and planner statistics included), without images:
those figures never read a pixel.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from annostream.client.transports import EmbeddedTransport
from annostream.demo import build_photo_coco
from annostream.formats import ImportSource
from annostream.formats.coco import read_coco

PROJECT = "bench"
LABELS = ["person", "cat", "dog", "car", "bicycle", "cup", "chair", "bottle", "bird", "tree"]


@dataclass
class Built:
    """A store folder with one project, its dataset and a viewer key."""

    store: Path
    project: str
    dataset: str
    key: dict[str, Any]
    files: int
    instances: int
    images_dir: Path | None = None
    annotations: Path | None = None


def _viewer(local: EmbeddedTransport) -> dict[str, Any]:
    return local.create_key(PROJECT, "viewer")


def build_images(root: Path, n_items: int) -> Built:
    """``n_items`` JPEG crops of real photographs, imported into a fresh store under ``root``."""
    if root.exists():
        shutil.rmtree(root)
    annotations = build_photo_coco(root / "source", n_items)
    local = EmbeddedTransport(root / "store")
    local.create_project(PROJECT, "annostream benchmark", False)
    coco = json.loads(annotations.read_text())
    result = local.import_source(PROJECT, "Default", read_coco(coco, root / "source" / "images"), "coco")
    return Built(
        root / "store",
        PROJECT,
        "Default",
        _viewer(local),
        result["files"],
        result["instances"],
        root / "source" / "images",
        annotations,
    )


def build_metadata(root: Path, n_files: int, per_file: int, seed: int = 0) -> Built:
    """``n_files`` image files without blobs, ``per_file`` boxes each, in one bulk commit."""
    from annostream.service.imports import refresh_statistics
    from annostream.service.ingest import refresh_derived
    from annostream.service.projects import LOCAL, authorize
    from annostream.store.versioning import begin_commit

    if root.exists():
        shutil.rmtree(root)
    local = EmbeddedTransport(root)
    local.create_project(PROJECT, "annostream benchmark (metadata)", False)
    for name in LABELS:
        local.create_label(PROJECT, name, None)
    local.create_dataset(PROJECT, "Default")
    store = local.store
    ref = authorize(store, LOCAL, PROJECT, "editor")
    rng = random.Random(seed)
    with store.engine.begin() as conn:
        rev = begin_commit(conn, ref.id, f"bulk insert {n_files} files")
        label_ids = [
            r[0]
            for r in conn.exec_driver_sql(
                "SELECT id FROM labels WHERE project_id = ? ORDER BY label_index", (ref.id,)
            )
        ]
        ds_id = conn.exec_driver_sql("SELECT id FROM datasets WHERE project_id = ?", (ref.id,)).scalar_one()
        first = (conn.exec_driver_sql("SELECT COALESCE(MAX(id), 0) FROM files").scalar_one()) + 1
        raw = conn.connection.driver_connection
        assert raw is not None
        chunk = 20_000
        for start in range(0, n_files, chunk):
            ids = range(first + start, first + min(n_files, start + chunk))
            raw.executemany(
                "INSERT INTO files (id, project_id, type, original_filename, width, height, metadata,"
                " created_at, created_rev) VALUES (?, ?, 'image', ?, 640, 480, ?, CURRENT_TIMESTAMP, ?)",
                [
                    (
                        i,
                        ref.id,
                        f"{i:08d}.jpg",
                        orjson.dumps({"split": "val" if i % 5 == 0 else "train"}).decode(),
                        rev,
                    )
                    for i in ids
                ],
            )
            raw.executemany(
                "INSERT INTO dataset_files (dataset_id, file_id, created_rev) VALUES (?, ?, ?)",
                [(ds_id, i, rev) for i in ids],
            )
            rows = []
            for i in ids:
                for _ in range(per_file):
                    x, y = rng.uniform(0, 560), rng.uniform(0, 400)
                    w, h = rng.uniform(8, 80), rng.uniform(8, 80)
                    geom = orjson.dumps({"x_min": x, "y_min": y, "x_max": x + w, "y_max": y + h}).decode()
                    rows.append((ref.id, i, rng.choice(label_ids), geom, x, y, x + w, y + h, w * h, rev))
            raw.executemany(
                "INSERT INTO instances (project_id, file_id, label_id, type, geometry, x_min, y_min,"
                " x_max, y_max, area, iscrowd, attributes, machine_made, created_rev)"
                " VALUES (?, ?, ?, 'box', ?, ?, ?, ?, ?, ?, 0, '{}', 0, ?)",
                rows,
            )
            refresh_derived(conn, list(ids), rev)
        refresh_statistics(conn)  # as an import of this size does
    return Built(root, PROJECT, "Default", _viewer(local), n_files, n_files * per_file)


WEATHER = ("rain", "sun", "fog")


def tiny_jpeg() -> bytes:
    """One small JPEG (640x480) that every metadata-only record of the scale store names."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (640, 480), (90, 120, 150)).save(out, "JPEG", quality=50)
    return out.getvalue()


def scale_source(n_files: int, per_file: int, seed: int = 0) -> ImportSource:
    """``n_files`` import records from one seeded generator, ``per_file`` instances each: boxes
    with labels, plus one global instance carrying the file-level ``weather`` attribute.

    Records name one shared 640x480 JPEG (the first record carries its bytes, which the import
    stages; the rest name it by sha256), so the store holds metadata and one blob.
    """
    import hashlib

    jpeg = tiny_jpeg()
    sha = hashlib.sha256(jpeg).hexdigest()
    rng = random.Random(seed)
    weights = [1, 3, 2, 2, 1, 1, 1, 1, 1, 1]

    def records() -> Iterator[dict[str, Any]]:
        for i in range(1, n_files + 1):
            boxes: list[dict[str, Any]] = []
            for label in rng.choices(LABELS, weights=weights, k=per_file - 1):
                x, y = rng.uniform(0, 560), rng.uniform(0, 400)
                w, h = rng.uniform(8, 80), rng.uniform(8, 80)
                boxes.append(
                    {
                        "type": "box",
                        "label": label,
                        "geometry": {"x_min": x, "y_min": y, "x_max": x + w, "y_max": y + h},
                    }
                )
            boxes.append({"type": "global", "attributes": {"weather": rng.choice(WEATHER)}})
            rec: dict[str, Any] = {
                "where": f"record {i}",
                "name": f"{i:08d}.jpg",
                "metadata": {"split": "val" if i % 5 == 0 else "train"},
                "instances": boxes,
            }
            if i == 1:
                rec["data"] = jpeg
            else:
                rec["sha256"] = sha
            yield rec

    return ImportSource(
        [{"name": n} for n in LABELS],
        [{"name": "weather", "kind": "select", "options": list(WEATHER)}],
        records(),
        n_files,
    )
