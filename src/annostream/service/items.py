"""Reads: items (a file with its instances) by id list and by keyset page, and blobs.

An item is a plain dict, built with two indexed queries per batch (files, then instances),
whatever the batch size: the cost per item falls as batches grow. A batch is kept as its rows
and made into items when asked: as plain values, or for the wire with the JSON columns as
stored (orjson writes their text unchanged: the same bytes as decoding and encoding them).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from operator import itemgetter
from typing import Any, cast

import orjson
from sqlalchemy import ARRAY, BigInteger, Connection, Integer, Text, any_, bindparam, func, select

from annostream.errors import NotFound
from annostream.schema import FileInfo, Instance, Item
from annostream.service.datasets import DatasetRef, membership, page_conditions, resolve_revision
from annostream.service.labels import vocabulary_at
from annostream.service.projects import ProjectRef
from annostream.store import Store
from annostream.store.blobs import BlobStore, get_many
from annostream.store.db import driver_rows, reading
from annostream.store.tables import blobs, dataset_files, files, instances
from annostream.store.versioning import visible


def _as_text(column: Any) -> Any:
    """A JSON column read as its stored text. SQLite stores text; PostgreSQL's ``json`` type
    (not ``jsonb``) keeps the text it was given and casts to it verbatim, where psycopg would
    otherwise decode each value with the standard library's ``json`` (half the CPU of reading
    a batch's rows). The wire gets the writer's own bytes (``_stored``); plain items decode
    them with orjson (``_json``)."""
    return column.cast(Text)


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
    _as_text(files.c.keyframes),
    files.c.text,
    _as_text(files.c.metadata),
    files.c.parent_id,
    files.c.frame_number,
    files.c.created_rev,
    blobs.c.size,
    blobs.c.content_type,
)


def _file_dict(row: Sequence[Any], wire: bool) -> FileInfo:
    """A file from a row of ``_FILE_COLUMNS``, unpacked by position (see ``_instance_dict``);
    with ``wire``, its JSON columns as stored (see ``_stored``)."""
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
        "keyframes": _stored(keyframes) if wire else _json(keyframes),
        "text": text,
        "metadata": _stored_object(metadata) if wire else (_json(metadata) or {}),
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
    _as_text(instances.c.geometry),
    instances.c.x_min,
    instances.c.y_min,
    instances.c.x_max,
    instances.c.y_max,
    instances.c.area,
    instances.c.iscrowd,
    _as_text(instances.c.attributes),
    instances.c.track_id,
    instances.c.machine_made,
    instances.c.keyframe,
)


def _json(value: Any) -> Any:
    """A JSON column's stored text (``_as_text``), decoded; NULL stays None."""
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def _stored(value: Any) -> Any:
    """A JSON column for the wire: its stored text as is (``orjson.Fragment``), which orjson
    writes out unchanged. Every writer stores orjson's own encoding, and decoding that and
    encoding it again gives the same bytes, so the reply is the same without either step."""
    return orjson.Fragment(value) if isinstance(value, str) else value


def _stored_object(value: Any) -> Any:
    """``_stored`` for an object column that reads as ``{}`` when empty or null (``or {}``)."""
    if isinstance(value, str) and value[:1] == "{":
        return orjson.Fragment(value)
    return _json(value) or {}


def _instance_dict(row: Sequence[Any], by_id: dict[int, Any], wire: bool) -> Instance:
    """An instance from a row of ``_INSTANCE_COLUMNS``, unpacked by position: named access
    on a Row, and the JSON type's result processor, cost more than the rest of the dict. The
    row comes as the driver gives it (``driver_rows``: a Boolean may be 0 or 1)."""
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
    label = by_id.get(label_id) if label_id is not None else None
    return {
        "id": inst_id,
        "type": inst_type,
        "label": label["name"] if label else None,
        "label_id": label["id"] if label else None,
        "frame_number": frame_number,
        "geometry": _stored(geometry) if wire else _json(geometry),
        "bbox": None if x_min is None else [x_min, y_min, x_max, y_max],
        "area": area,
        "iscrowd": bool(iscrowd),
        "attributes": _stored_object(attributes) if wire else (_json(attributes) or {}),
        "track_id": track_id,
        "keyframe": None if keyframe is None else bool(keyframe),
        "machine_made": bool(machine_made),
    }


def _in_ids(column: Any, sqlite: bool) -> Any:
    """``column`` among the ``ids`` parameter, one value whatever the batch's size, so the
    statement's SQL is the same for every batch (compiled once; PostgreSQL prepares it): on
    SQLite a JSON array (``json_each``), on PostgreSQL an array (``= ANY``)."""
    if sqlite:
        return column.in_(select(func.json_each(bindparam("ids")).table_valued("value").c.value))
    return column == any_(bindparam("ids", type_=ARRAY(BigInteger)))


# The two statements of every batch (by dialect: SQLite or not), built once: a prebuilt
# statement keeps its cache key, so executing it costs neither the column coercions of
# ``select`` nor a cache-key walk (and ``driver_rows`` compiles it once).
# Instances come unordered: ``_Rows`` sorts them (SQLite's temporary B-tree for an ORDER BY
# costs more than sorting a batch's rows in Python).
_REV = cast(int, bindparam("rev", type_=Integer))  # visible() at a bound revision
_FILES_BY_ID = {
    sqlite: select(*_FILE_COLUMNS, files.c.project_id)
    .outerjoin(blobs, blobs.c.sha256 == files.c.blob_sha256)
    .where(_in_ids(files.c.id, sqlite), visible(files, _REV))
    for sqlite in (True, False)
}
_INSTANCES_OF = {
    sqlite: select(*_INSTANCE_COLUMNS).where(_in_ids(instances.c.file_id, sqlite), visible(instances, _REV))
    for sqlite in (True, False)
}
_FILE_AND_ID = itemgetter(0, 1)


def _rows_by_ids(
    conn: Connection, statements: Sequence[dict[bool, Any]], ids: list[int], rev: int
) -> list[list[Any]]:
    """The rows of each of ``statements`` (pairs above, by dialect) for ``ids`` at ``rev``,
    sent together (on PostgreSQL one round trip: ``driver_rows``)."""
    sqlite = conn.dialect.name == "sqlite"
    params = {"ids": orjson.dumps(ids).decode() if sqlite else ids, "rev": rev}
    return driver_rows(conn, [(statement[sqlite], params) for statement in statements])


class _Rows:
    """A batch's file rows (in the order asked) and their instance rows, read at one revision,
    made into items on demand: plain values (``items``), or for the wire (``wire_items``)."""

    def __init__(
        self, conn: Connection, ref: ProjectRef, file_rows: Sequence[Any], instance_rows: list[Any], rev: int
    ) -> None:
        """``instance_rows``: those of ``file_rows``' files (``_INSTANCES_OF``), in any order."""
        self.files = file_rows
        self.by_id = vocabulary_at(conn, ref.id, rev).by_id
        self.instances: dict[int, list[Any]] = {row[0]: [] for row in file_rows}
        instance_rows.sort(key=_FILE_AND_ID)
        for row in instance_rows:
            self.instances[row[0]].append(row)
        self.blob_url: str | None = None  # with ``blobs="url"``: the blob route's prefix

    def items(self, wire: bool = False) -> list[Item]:
        """The items; with ``wire``, JSON columns as stored (orjson writes the same bytes)."""
        by_id, instances, blob_url = self.by_id, self.instances, self.blob_url
        out: list[Item] = []
        for row in self.files:
            file = _file_dict(row, wire)
            if blob_url is not None:
                file["blob_url"] = f"{blob_url}{file['sha256']}" if file["sha256"] else None
            insts = [_instance_dict(r, by_id, wire) for r in instances[row[0]]]
            out.append({"id": row[0], "file": file, "instances": insts})
        return out


def _items(conn: Connection, ref: ProjectRef, file_rows: Sequence[Any], rev: int) -> list[Item]:
    file_ids = [row[0] for row in file_rows]
    instance_rows = _rows_by_ids(conn, [_INSTANCES_OF], file_ids, rev)[0] if file_ids else []
    return _Rows(conn, ref, file_rows, instance_rows, rev).items()


def _revision(conn: Connection, ref: ProjectRef, as_of: int | None) -> int:
    """``resolve_revision``, without a statement where the grant read the head and ``as_of``
    is the head or None (a committed revision never changes, so the grant's head is as good)."""
    if ref.head_rev is not None and as_of in (None, ref.head_rev):
        return ref.head_rev
    return resolve_revision(conn, ref, as_of)


def _read_rows(store: Store, ref: ProjectRef, ids: Sequence[int], as_of: int | None) -> tuple[_Rows, int]:
    """The rows of the items for ``ids`` in the order given, each once (a repeated id is served
    at its first place, so repeats cannot multiply an answer), at ``as_of`` (head when None);
    404 on any miss."""
    wanted = list(dict.fromkeys(int(i) for i in ids))
    with reading(store.engine) as conn:
        rev = _revision(conn, ref, as_of)
        # The project is checked on the rows, not in SQL: with it in the WHERE clause SQLite
        # picks the (project_id, blob_sha256) index and scans the whole project per batch.
        # Files and their instances are asked for together (one round trip on PostgreSQL):
        # the instances are used only when every file was found in this project.
        file_rows, instance_rows = _rows_by_ids(conn, [_FILES_BY_ID, _INSTANCES_OF], wanted, rev)
        found = {row[0]: row for row in file_rows if row[-1] == ref.id}
        missing = [i for i in wanted if i not in found]
        if missing:
            raise NotFound(f"files not found at revision {rev}: {missing[:10]}", {"missing": missing[:100]})
        return _Rows(conn, ref, [found[i] for i in wanted], instance_rows, rev), rev


def read_items(
    store: Store, ref: ProjectRef, ids: Sequence[int], as_of: int | None = None
) -> tuple[list[Item], int]:
    """Items for ``ids`` in the order given, each once, at ``as_of`` (head when None); 404 on any
    miss (see ``_read_rows``)."""
    rows, rev = _read_rows(store, ref, ids, as_of)
    return rows.items(), rev


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
    server), so a large batch is streamed rather than held. The items are made from their rows
    when first asked for: as plain values (``items``: the embedded client's) or for the wire
    (``wire_items``: what the server's replies encode, the same bytes without decoding and
    encoding again the JSON columns)."""

    source: _Rows | list[Item]
    revision: int
    inline: bool
    store: BlobStore

    @cached_property
    def items(self) -> list[Item]:
        return self.source if isinstance(self.source, list) else self.source.items()

    @cached_property
    def wire_items(self) -> list[Item]:
        return self.source if isinstance(self.source, list) else self.source.items(wire=True)

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


def _blob_url(ref: ProjectRef) -> str:
    """The prefix of a blob's URL (``blobs="url"``); the sha256 follows."""
    return f"/api/v2/projects/{ref.string_id}/blobs/"


def read_batch(store: Store, ref: ProjectRef, ids: Sequence[int], as_of: int | None, blobs: str) -> ItemBatch:
    """Items by id with their blobs: ``inline`` (bytes), ``url`` (a blob route URL) or ``none``."""
    rows, rev = _read_rows(store, ref, ids, as_of)
    if blobs == "url":
        rows.blob_url = _blob_url(ref)
    return ItemBatch(rows, rev, blobs == "inline", store.blobs)


def with_blobs(store: Store, ref: ProjectRef, found: list[Item], rev: int, blobs: str) -> ItemBatch:
    """Items read at ``rev`` as a batch whose blobs are ``inline``, ``url`` or ``none``."""
    if blobs == "url":
        for item in found:
            sha = item["file"]["sha256"]
            item["file"]["blob_url"] = f"{_blob_url(ref)}{sha}" if sha else None
    return ItemBatch(found, rev, blobs == "inline", store.blobs)
