"""Writes: files with their instances, and instance edits (bulk imports: ``imports``).

Each public function here is one commit (``service.commit``): it allocates a revision,
writes, maintains the derived tables (per-(file, label) counts, the attribute index), and
either all of it lands or none of it does. An uploaded image is staged first
(``service.staging``: its rows committed, then its bytes), so a crash at any point leaves
nothing but a staged blob that gc collects; a write that fails takes back what it staged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import JSON, Connection, Table, and_, insert, select

from annostream.errors import InvalidInput, NotFound
from annostream.paths import safe_name
from annostream.schema import InstanceIn, validate
from annostream.service import geometry, video
from annostream.service import text as text_service
from annostream.service.attribute_index import history_rows, refresh_attribute_index
from annostream.service.commit import commit
from annostream.service.dataset_counts import refresh_dataset_counts
from annostream.service.datasets import ensure_dataset
from annostream.service.labels import Vocabulary, check_attributes, load_vocabulary
from annostream.service.projects import ProjectRef
from annostream.service.staging import probe_image, release_staged, stage_blobs, unstage
from annostream.store import Store
from annostream.store.db import inserted_id
from annostream.store.tables import dataset_files, file_attribute_values, file_label_counts, files, instances
from annostream.store.versioning import end_rows

# Instance types that ``labels.<name>`` does not count (events have ``events.<name>``).
NOT_COUNTED = ("event", "relation")

_DIFFGRAM_KEYS = frozenset(
    {
        "x_min",
        "y_min",
        "x_max",
        "y_max",
        "label_file_id",
        "label_name",
        "label_file",
        "points",
        "nodes",
        "center_x",
        "front_face",
    }
)


def check_metadata(value: Any, field: str) -> dict[str, Any]:
    """``value`` as file metadata (a JSON object, no NUL anywhere), or 422 naming ``field``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(
            f"{field}: metadata must be a JSON object, not {type(value).__name__}", {"field": field}
        )

    def walk(node: Any, at: str) -> None:
        if isinstance(node, dict):
            for key, inner in node.items():
                if not isinstance(key, str) or "\x00" in key:
                    raise InvalidInput(
                        f"{at}: metadata keys must be strings without NUL: {key!r}", {"field": at}
                    )
                walk(inner, f"{at}.{key}")
        elif isinstance(node, list):
            for i, inner in enumerate(node):
                walk(inner, f"{at}[{i}]")
        elif isinstance(node, str) and "\x00" in node:
            raise InvalidInput(f"{at}: metadata text must not hold NUL", {"field": at})

    walk(value, field)
    return value


def as_native(raw: Any, vocab: Vocabulary | None, where: str) -> Any:
    """A Diffgram-style instance dict (flat ``x_min``..., ``label_file_id`` / ``label_name``)
    as a native one; anything else unchanged (validation names what is wrong with it)."""
    if not isinstance(raw, dict) or "geometry" in raw or not _DIFFGRAM_KEYS & raw.keys():
        return raw
    from annostream.formats.diffgram_json import instance_in

    names = {str(e["id"]): e["name"] for e in (vocab.by_id.values() if vocab else ())}
    if vocab is not None and raw.get("label_file_id") is not None and str(raw["label_file_id"]) not in names:
        raise InvalidInput(
            f"{where}.label_file_id: unknown label {raw['label_file_id']!r}",
            {"field": f"{where}.label_file_id"},
        )
    try:
        native = instance_in(raw, names)
    except (TypeError, ValueError, AttributeError) as exc:
        raise InvalidInput(f"{where}: malformed Diffgram-style instance ({exc})", {"field": where}) from exc
    return {k: v for k, v in native.items() if v is not None}


def parse_instances(
    raw: Iterable[Any], where: str = "instances", vocab: Vocabulary | None = None
) -> list[InstanceIn]:
    """Validate raw instance dicts (native or Diffgram-style) into models; errors name the field."""
    if not isinstance(raw, (list, tuple)):
        raise InvalidInput(f"{where}: instances must be a list", {"field": where})
    return [
        validate(InstanceIn, as_native(item, vocab, f"{where}[{i}]"), f"{where}[{i}]")
        for i, item in enumerate(raw)
    ]


def instance_rows(
    project_id: int,
    file_id: int,
    width: int | None,
    height: int | None,
    items: list[InstanceIn],
    vocab: Vocabulary,
    rev: int,
    where: str,
) -> list[dict[str, Any]]:
    rows = []
    for i, inst in enumerate(items):
        at = f"{where}[{i}]"
        label_id = None
        if inst.label is not None:
            label_id = vocab.label(inst.label, f"{at}.label")["db_id"]
        elif inst.type != "global":
            raise InvalidInput(f"{at}.label: a {inst.type} needs a label", {"field": f"{at}.label"})
        geom, bbox = geometry.normalise(inst, width, height, at)
        check_attributes(vocab, inst.attributes, at)
        x_min, y_min, x_max, y_max = bbox if bbox else (None, None, None, None)
        ranged = inst.type in ("event", "span")
        keyframe = (
            inst.keyframe if inst.keyframe is not None else (True if inst.track_id is not None else None)
        )
        rows.append(
            {
                "project_id": project_id,
                "file_id": file_id,
                "frame_number": inst.frame_number,
                "label_id": label_id,
                "type": inst.type,
                "geometry": geom,
                "x_min": x_min,
                "y_min": y_min,
                "x_max": x_max,
                "y_max": y_max,
                "area": inst.area if inst.area is not None else geometry.area_of(inst.type, geom, bbox),
                "iscrowd": inst.iscrowd,
                "attributes": inst.attributes,
                "track_id": inst.track_id,
                "keyframe": keyframe,
                "range_start": geom["start"] if ranged else None,
                "range_end": geom["end"] if ranged else None,
                "machine_made": inst.machine_made,
                "created_rev": rev,
                "deleted_rev": None,
            }
        )
    return rows


def refresh_derived(conn: Connection, file_ids: list[int], rev: int) -> None:
    """Bring the derived tables of ``file_ids`` (label counts, attribute index, the per-dataset
    counts) up to the live instances and memberships, in the caller's commit: once per commit,
    after its writes to those files."""
    refresh_label_counts(conn, file_ids, rev)
    refresh_attribute_index(conn, file_ids, rev)
    refresh_dataset_counts(conn, file_ids, rev)


def refresh_label_counts(conn: Connection, file_ids: list[int], rev: int) -> None:
    """Bring the versioned per-(file, label) counts of ``file_ids`` up to the live instances."""
    for start in range(0, len(file_ids), 500):
        chunk = file_ids[start : start + 500]
        want = Counter(
            (r.file_id, r.label_id)
            for r in conn.execute(
                select(instances.c.file_id, instances.c.label_id).where(
                    instances.c.file_id.in_(chunk),
                    instances.c.deleted_rev.is_(None),
                    instances.c.label_id.is_not(None),
                    instances.c.type.not_in(NOT_COUNTED),
                )
            )
        )
        have = {
            (r.file_id, r.label_id): (r.id, r._mapping["count"])  # ``r.count`` is the tuple method
            for r in conn.execute(
                select(file_label_counts).where(
                    file_label_counts.c.file_id.in_(chunk), file_label_counts.c.deleted_rev.is_(None)
                )
            )
        }
        stale = [row_id for key, (row_id, n) in have.items() if want.get(key) != n]
        if stale:
            end_rows(conn, file_label_counts, file_label_counts.c.id.in_(stale), rev)
        fresh = [
            {"file_id": f, "label_id": lab, "count": n, "created_rev": rev, "deleted_rev": None}
            for (f, lab), n in want.items()
            if have.get((f, lab), (None, None))[1] != n
        ]
        if fresh:
            conn.execute(insert(file_label_counts), fresh)


def insert_rows(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """``rows`` (dicts with the same keys) inserted in one batch on the driver, in the
    caller's transaction: SQLite ``executemany``, PostgreSQL ``COPY``.

    What SQLAlchemy's executemany does per row (building each parameter set, one bind
    processor per value; on psycopg one pipelined statement per row) costs more than the
    insert itself at import scale. Here JSON columns are serialised with orjson (as the
    engine's serializer does) and the driver gets plain tuples. Other dialects take
    SQLAlchemy's path."""
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        conn.execute(insert(table), rows)
        return
    keys = list(rows[0])
    params = [list(r.values()) for r in rows]
    for i, key in enumerate(keys):
        if isinstance(table.c[key].type, JSON):
            for p in params:
                if p[i] is not None:
                    p[i] = orjson.dumps(p[i]).decode()
    quote = conn.dialect.identifier_preparer.quote
    columns = f"{quote(table.name)} ({', '.join(quote(k) for k in keys)})"
    if dialect == "sqlite":
        marks = ", ".join("?" for _ in keys)
        conn.exec_driver_sql(f"INSERT INTO {columns} VALUES ({marks})", [tuple(p) for p in params])
        return
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(f"COPY {columns} FROM STDIN") as copy:
        for p in params:
            copy.write_row(p)


def derive_new(conn: Connection, rows: list[dict[str, Any]], rev: int) -> None:
    """Derived rows (label counts, attribute index) of files created in commit ``rev``, from
    ``rows``: all of their instances, as inserted. Equal to what :func:`refresh_derived` would
    write for those files, without reading the instances back."""
    counts = Counter(
        (r["file_id"], r["label_id"])
        for r in rows
        if r["label_id"] is not None and r["type"] not in NOT_COUNTED
    )
    if counts:
        insert_rows(
            conn,
            file_label_counts,
            [
                {"file_id": f, "label_id": lab, "count": n, "created_rev": rev, "deleted_rev": None}
                for (f, lab), n in counts.items()
            ],
        )
    insert_rows(conn, file_attribute_values, list(history_rows(rows)))


@dataclass
class Probe:
    """What an upload is: its type, size, content type, and its text or video facts."""

    type: str
    width: int | None
    height: int | None
    mime: str
    text: str | None = None
    video: video.VideoInfo | None = None

    @property
    def frame_count(self) -> int | None:
        return self.video.frame_count if self.video else None

    def check(self, items: list[InstanceIn], where: str) -> None:
        """Frame numbers, events, spans and relations fit this file; 422 otherwise."""
        video.check_instances(items, self.frame_count, where)
        text_service.check_instances(items, self.text, (), where)


def file_row(
    ref: ProjectRef,
    rev: int,
    *,
    name: str,
    sha: str | None,
    probe: Probe,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """The ``files`` row of a new file (every column given, so rows insert as one batch)."""
    v = probe.video
    return {
        "project_id": ref.id,
        "type": probe.type,
        "original_filename": name,
        "blob_sha256": sha,
        "width": probe.width,
        "height": probe.height,
        "text": probe.text,
        "metadata": metadata,
        "created_rev": rev,
        "frame_count": v.frame_count if v else None,
        "fps": v.fps if v else None,
        "duration": v.duration if v else None,
        "codec": v.codec if v else None,
        "keyframes": v.keyframes if v else None,
    }


def insert_files(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``files`` rows in one batch; their ids, in the order of ``rows``."""
    if not rows:
        return []
    result = conn.execute(insert(files).returning(files.c.id, sort_by_parameter_order=True), rows)
    return [int(r[0]) for r in result]


def probe_upload(filename: str, data: bytes, where: str = "file") -> Probe:
    """What an upload is, by its name's suffix and its bytes; 422 when it is not readable."""
    if filename.lower().endswith(".txt"):
        return probe_text(filename, data, where)
    if video.is_video_name(filename):
        info = video.probe_video(data, where, filename)
        return Probe("video", info.width, info.height, info.content_type, video=info)
    width, height, mime = probe_image(data, where)
    return Probe("image", width, height, mime)


def probe_text(filename: str, data: bytes, where: str = "file") -> Probe:
    """A text file: UTF-8 without NUL (no database text column holds NUL); 422 otherwise."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{where}: '{filename}' is not UTF-8 text", {"field": where}) from exc
    if "\x00" in text:
        raise InvalidInput(f"{where}: '{filename}' holds NUL: not a text file", {"field": where})
    return Probe("text", None, None, "text/plain; charset=utf-8", text=text)


def add_file(
    store: Store,
    ref: ProjectRef,
    dataset: str,
    filename: str,
    data: bytes,
    instances_in: Iterable[Any] = (),
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Upload one file (image, video or UTF-8 text) into ``dataset`` with its instances: one commit.

    The name must be a safe relative name (``safe_name``: no ``..``, no leading ``/``, no
    control characters; 422 otherwise); metadata must be an object whose keys hold no NUL."""
    filename = safe_name(filename, "file")
    metadata = check_metadata(metadata, "metadata")
    parse_instances(instances_in)  # fail fast, before anything is staged
    probe = probe_upload(filename, data)
    staged = (
        []
        if probe.type == "text"
        else stage_blobs(store, ref, [(data, "file")], probed=[(probe.width, probe.height, probe.mime)])
    )
    sha = staged[0].sha256 if staged else None
    try:
        with commit(store, ref, f"add {filename}") as (conn, rev, _):
            vocab = load_vocabulary(conn, ref.id, None)
            items = parse_instances(instances_in, vocab=vocab)
            ds = ensure_dataset(conn, ref, dataset, rev)
            row = file_row(ref, rev, name=filename, sha=sha, probe=probe, metadata=metadata)
            file_id = inserted_id(conn.execute(insert(files).values(**row)))
            conn.execute(insert(dataset_files).values(dataset_id=ds.id, file_id=file_id, created_rev=rev))
            probe.check(items, "instances")
            rows = instance_rows(ref.id, file_id, probe.width, probe.height, items, vocab, rev, "instances")
            if rows:
                conn.execute(insert(instances), rows)
            refresh_derived(conn, [file_id], rev)
            release_staged(conn, ref, [sha] if sha else [])
    except BaseException:
        unstage(store, ref, staged)
        raise
    return {
        "id": file_id,
        "name": filename,
        "type": probe.type,
        "sha256": sha,
        "width": probe.width,
        "height": probe.height,
        "frame_count": probe.frame_count,
        "revision": rev,
        "instances": len(rows),
    }


def _live_file(conn: Connection, ref: ProjectRef, file_id: int) -> Any:
    row = conn.execute(
        select(files.c.id, files.c.width, files.c.height, files.c.frame_count, files.c.text).where(
            files.c.id == file_id, files.c.project_id == ref.id, files.c.deleted_rev.is_(None)
        )
    ).first()
    if row is None:
        raise NotFound(f"file {file_id} not found in project '{ref.string_id}'", {"file_id": file_id})
    return row


def _span_keys(conn: Connection, file_id: int) -> list[str]:
    """Keys of the live spans of a file (relations added later refer to them)."""
    return [
        g.get("key")
        for g in conn.execute(
            select(instances.c.geometry).where(
                instances.c.file_id == file_id, instances.c.type == "span", instances.c.deleted_rev.is_(None)
            )
        ).scalars()
    ]


def write_instances(
    store: Store, ref: ProjectRef, file_id: int, instances_in: Iterable[Any], *, replace: bool
) -> dict[str, Any]:
    """Add instances to a file, or replace all of its instances: one commit."""
    parse_instances(instances_in)
    with commit(store, ref, f"{'replace' if replace else 'add'} instances of file {file_id}") as (
        conn,
        rev,
        _,
    ):
        row = _live_file(conn, ref, file_id)
        vocab = load_vocabulary(conn, ref.id, None)
        items = parse_instances(instances_in, vocab=vocab)
        video.check_instances(items, row.frame_count, "instances")
        keys = () if replace else _span_keys(conn, file_id)
        text_service.check_instances(items, row.text, keys, "instances")
        rows = instance_rows(ref.id, file_id, row.width, row.height, items, vocab, rev, "instances")
        removed = end_rows(conn, instances, instances.c.file_id == file_id, rev) if replace else 0
        if rows:
            conn.execute(insert(instances), rows)
        refresh_derived(conn, [file_id], rev)
    return {"file_id": file_id, "revision": rev, "added": len(rows), "removed": removed}


def delete_instance(store: Store, ref: ProjectRef, instance_id: int) -> dict[str, Any]:
    with commit(store, ref, f"delete instance {instance_id}") as (conn, rev, _):
        file_id = conn.execute(
            select(instances.c.file_id).where(
                instances.c.id == instance_id,
                instances.c.project_id == ref.id,
                instances.c.deleted_rev.is_(None),
            )
        ).scalar()
        if file_id is None:
            raise NotFound(f"instance {instance_id} not found", {"instance_id": instance_id})
        end_rows(conn, instances, instances.c.id == instance_id, rev)
        refresh_derived(conn, [file_id], rev)
    return {"instance_id": instance_id, "revision": rev}


def remove_file(store: Store, ref: ProjectRef, dataset_id: int, file_id: int) -> dict[str, Any]:
    """Take a file out of a dataset (the file and its history stay)."""
    with commit(store, ref, f"remove file {file_id}") as (conn, rev, _):
        removed = end_rows(
            conn,
            dataset_files,
            and_(dataset_files.c.dataset_id == dataset_id, dataset_files.c.file_id == file_id),
            rev,
        )
        if not removed:
            raise NotFound(f"file {file_id} is not in this dataset", {"file_id": file_id})
        refresh_dataset_counts(conn, [file_id], rev)
    return {"file_id": file_id, "revision": rev}
