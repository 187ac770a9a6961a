"""Reads: items (a file with its instances) by id list and by keyset page, and blobs.

An item is a plain dict, built with two indexed queries per batch (files, then instances),
whatever the batch size: the cost per item falls as batches grow.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
from sqlalchemy import Connection, Integer, Text, bindparam, select, type_coerce

from annostream.errors import NotFound
from annostream.schema import FileInfo, Instance, Item
from annostream.service.datasets import DatasetRef, membership, page_conditions, resolve_revision
from annostream.service.labels import Vocabulary, vocabulary_at
from annostream.service.projects import ProjectRef
from annostream.store import Store
from annostream.store.blobs import BlobStore, get_many
from annostream.store.db import reading
from annostream.store.tables import blobs, dataset_files, files, instances
from annostream.store.versioning import visible

_FILE_COLUMNS = (
    files.c.id,
    files.c.type,
    files.c.original_filename,
    files.c.blob_sha256,
    files.c.width,
    files.c.height,
    files.c.frame_count,
    files.c.fps,
    files.c.duration,
    files.c.codec,
    type_coerce(files.c.keyframes, Text),
    files.c.text,
    type_coerce(files.c.metadata, Text),
    files.c.parent_id,
    files.c.frame_number,
    files.c.created_rev,
    blobs.c.size,
    blobs.c.content_type,
)


def _file_dict(row: Sequence[Any]) -> FileInfo:
    """A file from a row of ``_FILE_COLUMNS``, unpacked by position (see ``_instance_dict``)."""
    (
        file_id,
        file_type,
        name,
        sha256,
        width,
        height,
        frame_count,
        fps,
        duration,
        codec,
        keyframes,
        text,
        metadata,
        parent_id,
        frame_number,
        created_rev,
        size,
        content_type,
    ) = row[:18]
    return {
        "id": file_id,
        "name": name,
        "type": file_type,
        "sha256": sha256,
        "size": size,
        "content_type": content_type,
        "width": width,
        "height": height,
        "frame_count": frame_count,
        "fps": fps,
        "duration": duration,
        "codec": codec,
        "keyframes": _json(keyframes),
        "text": text,
        "metadata": _json(metadata) or {},
        "parent_id": parent_id,
        "frame_number": frame_number,
        "created_rev": created_rev,
    }


_INSTANCE_COLUMNS = (
    instances.c.file_id,
    instances.c.id,
    instances.c.type,
    instances.c.label_id,
    instances.c.frame_number,
    type_coerce(instances.c.geometry, Text),
    instances.c.x_min,
    instances.c.y_min,
    instances.c.x_max,
    instances.c.y_max,
    instances.c.area,
    instances.c.iscrowd,
    type_coerce(instances.c.attributes, Text),
    instances.c.track_id,
    instances.c.machine_made,
    instances.c.keyframe,
)


def _json(value: Any) -> Any:
    """A JSON object column read as text (SQLite) or already decoded by the driver."""
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def _instance_dict(row: Sequence[Any], vocab: Vocabulary) -> Instance:
    """An instance from a row of ``_INSTANCE_COLUMNS``, unpacked by position: named access
    on a Row, and the JSON type's result processor, cost more than the rest of the dict."""
    (
        _,
        inst_id,
        inst_type,
        label_id,
        frame_number,
        geometry,
        x_min,
        y_min,
        x_max,
        y_max,
        area,
        iscrowd,
        attributes,
        track_id,
        machine_made,
        keyframe,
    ) = row
    label = vocab.by_id.get(label_id) if label_id is not None else None
    return {
        "id": inst_id,
        "type": inst_type,
        "label": label["name"] if label else None,
        "label_id": label["id"] if label else None,
        "frame_number": frame_number,
        "geometry": _json(geometry),
        "bbox": None if x_min is None else [x_min, y_min, x_max, y_max],
        "area": area,
        "iscrowd": bool(iscrowd),
        "attributes": _json(attributes) or {},
        "track_id": track_id,
        "keyframe": keyframe,
        "machine_made": bool(machine_made),
    }


# The two statements of every batch, built once: a prebuilt statement keeps its cache key,
# so executing it costs neither the column coercions of ``select`` nor a cache-key walk.
_REV = cast(int, bindparam("rev", type_=Integer))  # visible() at a bound revision
_FILES_BY_ID = (
    select(*_FILE_COLUMNS, files.c.project_id)
    .outerjoin(blobs, blobs.c.sha256 == files.c.blob_sha256)
    .where(files.c.id.in_(bindparam("ids", expanding=True)), visible(files, _REV))
)
_INSTANCES_OF = (
    select(*_INSTANCE_COLUMNS)
    .where(instances.c.file_id.in_(bindparam("ids", expanding=True)), visible(instances, _REV))
    .order_by(instances.c.file_id, instances.c.id)
)


def _items(conn: Connection, ref: ProjectRef, file_rows: Sequence[Any], rev: int) -> list[Item]:
    vocab = vocabulary_at(conn, ref.id, rev)
    items: dict[int, Item] = {r[0]: {"id": r[0], "file": _file_dict(r), "instances": []} for r in file_rows}
    if items:
        for row in conn.execute(_INSTANCES_OF, {"ids": list(items), "rev": rev}).all():
            items[row[0]]["instances"].append(_instance_dict(row, vocab))
    return list(items.values())


def _revision(conn: Connection, ref: ProjectRef, as_of: int | None) -> int:
    """``resolve_revision``, without a statement where the grant read the head and ``as_of``
    is the head or None (a committed revision never changes, so the grant's head is as good)."""
    if ref.head_rev is not None and as_of in (None, ref.head_rev):
        return ref.head_rev
    return resolve_revision(conn, ref, as_of)


def read_items(
    store: Store, ref: ProjectRef, ids: Sequence[int], as_of: int | None = None
) -> tuple[list[Item], int]:
    """Items for ``ids`` in the order given, each once (a repeated id is served at its first
    place, so repeats cannot multiply an answer), at ``as_of`` (head when None); 404 on any miss."""
    wanted = list(dict.fromkeys(int(i) for i in ids))
    with reading(store.engine) as conn:
        rev = _revision(conn, ref, as_of)
        # The project is checked on the rows, not in SQL: with it in the WHERE clause SQLite
        # picks the (project_id, blob_sha256) index and scans the whole project per batch.
        rows = [
            row for row in conn.execute(_FILES_BY_ID, {"ids": wanted, "rev": rev}).all() if row[-1] == ref.id
        ]
        found = {item["id"]: item for item in _items(conn, ref, rows, rev)}
    missing = [i for i in wanted if i not in found]
    if missing:
        raise NotFound(f"files not found at revision {rev}: {missing[:10]}", {"missing": missing[:100]})
    return [found[i] for i in wanted], rev


def missing_files(store: Store, ref: ProjectRef, ids: Sequence[int]) -> list[int]:
    """Those of ``ids`` that are not live files of this project, in the order given."""
    wanted = [int(i) for i in ids]
    found: set[int] = set()
    with store.engine.connect() as conn:
        for start in range(0, len(wanted), 1000):
            chunk = wanted[start : start + 1000]
            found.update(
                conn.execute(
                    select(files.c.id).where(
                        files.c.id.in_(chunk), files.c.project_id == ref.id, files.c.deleted_rev.is_(None)
                    )
                ).scalars()
            )
    return [i for i in wanted if i not in found]


def page_items(
    store: Store,
    ds: DatasetRef,
    *,
    query: str | None = None,
    as_of: int | None = None,
    after: int | None = None,
    limit: int = 500,
) -> tuple[list[Item], int]:
    """One keyset page of a slice: items with file id > ``after``, in id order."""
    with store.engine.connect() as conn:
        rev = resolve_revision(conn, ds.project, as_of)
        stmt = (
            select(*_FILE_COLUMNS)
            .join(dataset_files, dataset_files.c.file_id == files.c.id)
            .outerjoin(blobs, blobs.c.sha256 == files.c.blob_sha256)
            .where(membership(ds, rev), visible(files, rev))
        )
        if after is not None:
            stmt = stmt.where(files.c.id > after)
        # Ordered by the (dataset_id, file_id) index SQLite walks, so LIMIT stops the walk; by
        # files.c.id (the same values) it sorts every match of the slice first.
        rows: list[Any] = []
        for condition in page_conditions(conn, ds, query, rev, after):
            part = stmt if condition is None else stmt.where(condition)
            rows += conn.execute(part.order_by(dataset_files.c.file_id).limit(limit - len(rows))).all()
            if len(rows) >= limit:
                break
        return _items(conn, ds.project, rows, rev), rev


def blob_info(store: Store, ref: ProjectRef, sha256: str) -> dict[str, Any]:
    """Size and type of a blob that some file of this project uses; 404 otherwise."""
    with store.engine.connect() as conn:
        row = conn.execute(
            select(blobs.c.sha256, blobs.c.size, blobs.c.content_type)
            .join(files, files.c.blob_sha256 == blobs.c.sha256)
            .where(blobs.c.sha256 == sha256, files.c.project_id == ref.id)
            .limit(1)
        ).first()
    if row is None:
        raise NotFound(f"blob {sha256} not found in project '{ref.string_id}'", {"sha256": sha256})
    return {"sha256": row.sha256, "size": row.size, "content_type": row.content_type}


@dataclass(frozen=True)
class BlobRead:
    """A blob some file of the project uses: how to serve it (a local path, a presigned URL)
    or read it. Immutable, named by its sha256."""

    sha256: str
    content_type: str
    size: int
    store: Store

    def read(self) -> bytes:
        return self.store.blobs.get(self.sha256)

    def local_path(self) -> Any:
        return self.store.blobs.local_path(self.sha256)

    def presigned_url(self) -> str | None:
        presign = getattr(self.store.blobs, "presigned_url", None)
        return presign(self.sha256, content_type=self.content_type) if presign is not None else None


def open_blob(store: Store, ref: ProjectRef, sha256: str) -> BlobRead:
    """The blob ``sha256`` if a file of this project uses it; 404 otherwise."""
    info = blob_info(store, ref, sha256)
    return BlobRead(sha256, info["content_type"], info["size"], store)


@dataclass(frozen=True)
class ItemBatch:
    """Items read at one revision; with ``inline``, each with its blob's bytes from ``store``,
    read only as they are consumed (``pairs``, or straight into the reply's buffers on the
    server), so a large batch is streamed rather than held."""

    items: list[Item]
    revision: int
    inline: bool
    store: BlobStore

    @property
    def pairs(self) -> Iterator[tuple[Item, bytes | None]]:
        """(item, blob bytes or None) in order; the blobs are fetched as the pairs are taken."""
        if not self.inline:
            return ((item, None) for item in self.items)
        return self._inline_pairs()

    def _inline_pairs(self) -> Iterator[tuple[Item, bytes | None]]:
        fetched = get_many(self.store, [i["file"]["sha256"] for i in self.items if i["file"]["sha256"]])
        for item in self.items:
            yield item, (next(fetched) if item["file"]["sha256"] else None)


def read_batch(store: Store, ref: ProjectRef, ids: Sequence[int], as_of: int | None, blobs: str) -> ItemBatch:
    """Items by id with their blobs: ``inline`` (bytes), ``url`` (a blob route URL) or ``none``."""
    found, rev = read_items(store, ref, ids, as_of)
    return with_blobs(store, ref, found, rev, blobs)


def with_blobs(store: Store, ref: ProjectRef, found: list[Item], rev: int, blobs: str) -> ItemBatch:
    """Items read at ``rev`` as a batch whose blobs are ``inline``, ``url`` or ``none``."""
    if blobs == "url":
        for item in found:
            sha = item["file"]["sha256"]
            item["file"]["blob_url"] = f"/api/v2/projects/{ref.string_id}/blobs/{sha}" if sha else None
    return ItemBatch(found, rev, blobs == "inline", store.blobs)
