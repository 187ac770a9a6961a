"""Ray Data face of the SDK: a view as a ``ray.data.Dataset`` read in parallel by id range.

The view is pinned first (its id list and revision are read once, on the driver); each
read task then holds a contiguous range of that id list, the revision and a picklable
transport, and reads its range in ``items:batch`` requests with blobs inline, so a Ray
cluster reads the slice in parallel and every task sees the same revision.

Rows: ``id``, ``name``, ``width``, ``height``, ``sha256``, ``image`` (the blob's bytes),
the sample's columns as ``make_sample`` builds them, so a row and ``ds[i]`` agree:
``boxes`` (xyxy pixels of every spatial instance), ``labels`` and ``label_ids`` (aligned
with ``boxes``), ``polygons`` and ``keypoints`` (points per instance), ``tags``; and
``item`` (the whole item as JSON, for anything else).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import orjson

from annostream.extras import require

try:
    import ray.data
except ImportError:
    require("ray", "annostream.integrations.ray")  # raises, naming the extra
    raise
import pyarrow as pa
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from annostream.client.sample import make_sample
from annostream.schema import Item

if TYPE_CHECKING:
    from annostream.client.dataset import Dataset
    from annostream.client.transports import Transport

# What a row weighs beyond its blob, for Ray's memory planning.
_ROW_BYTES = 1024


_POINTS = pa.list_(pa.list_(pa.list_(pa.float32())))
SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("name", pa.string()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("sha256", pa.string()),
        ("image", pa.binary()),
        ("boxes", pa.list_(pa.list_(pa.float32(), 4))),
        ("labels", pa.list_(pa.string())),
        ("label_ids", pa.list_(pa.int64())),
        ("polygons", _POINTS),
        ("keypoints", _POINTS),
        ("tags", pa.list_(pa.string())),
        ("item", pa.string()),
    ]
)


def _rows(items: list[tuple[Item, bytes | None]]) -> pa.Table:
    """One block: a row per item, its sample columns from ``make_sample`` itself."""
    columns: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
    for item, blob in items:
        f = item["file"]
        sample = make_sample(item, blob, None)
        row = {
            "id": item["id"],
            "name": f["name"],
            "width": f["width"],
            "height": f["height"],
            "sha256": f["sha256"],
            "image": blob,
            "boxes": sample["boxes"].tolist(),
            "labels": sample["labels"],
            "label_ids": sample["label_ids"].tolist(),
            "polygons": [p.tolist() for p in sample["polygons"]],
            "keypoints": [k.tolist() for k in sample["keypoints"]],
            "tags": sample["tags"],
            "item": orjson.dumps(item).decode(),
        }
        for name, value in row.items():
            columns[name].append(value)
    return pa.Table.from_pydict(columns, schema=SCHEMA)


def _read_range(
    transport: Transport, project: str, ids: np.ndarray, revision: int, batch_size: int
) -> Iterator[pa.Table]:
    """One read task: its id range in batches, each batch one block."""
    for start in range(0, len(ids), batch_size):
        chunk = [int(i) for i in ids[start : start + batch_size]]
        # The transports still speak plain dicts; what they carry is the service's Item.
        yield _rows(cast("list[tuple[Item, bytes | None]]", transport.items(project, chunk, revision, True)))


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

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        n = len(self.ids)
        if n == 0:
            return []
        ranges = np.array_split(self.ids, min(max(parallelism, 1), n))
        tasks = []
        for ids in ranges:
            meta = BlockMetadata(
                num_rows=len(ids), size_bytes=len(ids) * _ROW_BYTES, exec_stats=None, input_files=None
            )
            read = partial(_read_range, self.transport, self.project, ids, self.revision, self.batch_size)
            tasks.append(ReadTask(read, meta, per_task_row_limit=per_task_row_limit))
        return tasks


def to_ray(view: Dataset, *, parallelism: int = -1, batch_size: int = 64) -> ray.data.Dataset:
    """``view`` (pinned to its revision) as a ``ray.data.Dataset``; ``parallelism`` read tasks."""
    return ray.data.read_datasource(AnnostreamDatasource(view, batch_size), parallelism=parallelism)
