"""Ray Data face of the SDK: a view as a ``ray.data.Dataset`` read in parallel by id range.

The view is pinned first (its id list and revision are read once, on the driver); each
read task then holds a contiguous range of that id list, the revision and a picklable
transport, and reads its range in ``items:batch`` requests with blobs inline, so a Ray
cluster reads the slice in parallel and every task sees the same revision.

Rows: ``id``, ``name``, ``width``, ``height``, ``sha256``, ``image`` (the blob's bytes),
``labels`` (instance label names), ``boxes`` (xyxy per box instance) and ``item`` (the
whole item as JSON, for anything else).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from annostream.extras import require

require("ray", "annostream.integrations.ray")
import pyarrow as pa
import ray.data
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

if TYPE_CHECKING:
    from annostream.client.dataset import Dataset

# What a row weighs beyond its blob, for Ray's memory planning.
_ROW_BYTES = 1024


def _rows(items: list[tuple[dict[str, Any], bytes | None]]) -> pa.Table:
    columns: dict[str, list[Any]] = {k: [] for k in
                                     ("id", "name", "width", "height", "sha256", "image", "labels", "boxes", "item")}
    for item, blob in items:
        f = item["file"]
        columns["id"].append(item["id"])
        columns["name"].append(f.get("name"))
        columns["width"].append(f.get("width"))
        columns["height"].append(f.get("height"))
        columns["sha256"].append(f.get("sha256"))
        columns["image"].append(blob)
        columns["labels"].append([i.get("label") for i in item["instances"] if i.get("label")])
        columns["boxes"].append([[g["x_min"], g["y_min"], g["x_max"], g["y_max"]]
                                 for i in item["instances"] if i["type"] == "box"
                                 for g in [i["geometry"]]])
        columns["item"].append(orjson.dumps(item).decode())
    schema = pa.schema([("id", pa.int64()), ("name", pa.string()), ("width", pa.int64()),
                        ("height", pa.int64()), ("sha256", pa.string()), ("image", pa.binary()),
                        ("labels", pa.list_(pa.string())), ("boxes", pa.list_(pa.list_(pa.float64()))),
                        ("item", pa.string())])
    return pa.Table.from_pydict(columns, schema=schema)


def _read_range(transport: Any, project: str, ids: np.ndarray, revision: int,
                batch_size: int) -> Iterator[pa.Table]:
    """One read task: its id range in batches, each batch one block."""
    for start in range(0, len(ids), batch_size):
        chunk = [int(i) for i in ids[start:start + batch_size]]
        yield _rows(transport.items(project, chunk, revision, True))


class AnnostreamDatasource(Datasource):
    """Read tasks are contiguous id ranges of one pinned view."""

    def __init__(self, view: Dataset, batch_size: int = 64) -> None:
        super().__init__()
        pinned = view.snapshot()
        self.ids = np.asarray(pinned.ids, dtype=np.int64)
        self.revision = pinned.revision
        self.project = view.project.string_id
        self.transport = view.project.transport
        self.batch_size = batch_size

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        n = len(self.ids)
        if n == 0:
            return []
        ranges = np.array_split(self.ids, min(max(parallelism, 1), n))
        tasks = []
        for ids in ranges:
            transport, project, revision, batch = self.transport, self.project, self.revision, self.batch_size
            meta = BlockMetadata(num_rows=len(ids), size_bytes=len(ids) * _ROW_BYTES, exec_stats=None,
                                 input_files=None)
            tasks.append(ReadTask(
                lambda ids=ids, t=transport, p=project, r=revision, b=batch: _read_range(t, p, ids, r, b),
                meta, per_task_row_limit=per_task_row_limit))
        return tasks


def to_ray(view: Dataset, *, parallelism: int = -1, batch_size: int = 64) -> ray.data.Dataset:
    """``view`` (pinned to its revision) as a ``ray.data.Dataset``; ``parallelism`` read tasks."""
    return ray.data.read_datasource(AnnostreamDatasource(view, batch_size), parallelism=parallelism)
