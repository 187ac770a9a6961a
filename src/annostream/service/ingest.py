"""Writes: files with their instances, instance edits, and bulk imports.

Each public function here is one commit: it allocates a revision, writes, maintains the
derived tables (per-(file, label) counts, the attribute index), and either all of it lands
or none of it does. Blobs are written before the transaction (they are content addressed,
so that is safe); blobs that a failed write added are removed again.
"""

from __future__ import annotations

import io
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, UnidentifiedImageError
from pydantic import ValidationError
from sqlalchemy import Connection, and_, insert, select

from annostream.errors import InvalidInput, NotFound, PayloadTooLarge
from annostream.limits import LIMITS
from annostream.paths import safe_name
from annostream.schema import AttributeGroupCreate, InstanceIn, LabelCreate, check_metadata, validate
from annostream.service import geometry, video
from annostream.service import text as text_service
from annostream.service.attribute_index import refresh_attribute_index
from annostream.service.datasets import ensure_dataset
from annostream.service.labels import Vocabulary, check_attributes, ensure_labels, load_vocabulary
from annostream.service.projects import ProjectRef
from annostream.store import Store
from annostream.store.tables import (
    attribute_groups,
    attribute_options,
    blobs,
    dataset_files,
    file_label_counts,
    files,
    instances,
)
from annostream.store.versioning import begin_commit, end_rows

Progress = Callable[[int, int], None]

# Instance types that ``labels.<name>`` does not count (events have ``events.<name>``).
NOT_COUNTED = ("event", "relation")


def probe_image(data: bytes, where: str) -> tuple[int, int, str]:
    """(width, height, MIME type) of an image, or 422 naming ``where``."""
    limit = LIMITS.max_image_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.verify()
                width, height = img.size
                mime = Image.MIME.get(img.format or "", "application/octet-stream")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(f"{where}: image has more than {limit} pixels",
                              {"field": where, "limit": limit}) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"{where}: not a readable image ({exc})", {"field": where}) from exc
    if width * height > limit:
        raise PayloadTooLarge(f"{where}: image of {width}x{height} has more than {limit} pixels",
                              {"field": where, "limit": limit})
    return width, height, mime


class _BlobGuard:
    """Tracks blobs a write added, so a failed transaction can take them back."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.added: list[str] = []

    def put(self, conn: Connection, data: bytes, content_type: str) -> str:
        sha, new = self.store.blobs.put(data)
        if new:
            self.added.append(sha)
        _record_blob(conn, sha, len(data), content_type)
        return sha


def _record_blob(conn: Connection, sha: str, size: int, content_type: str) -> None:
    if conn.execute(select(blobs.c.sha256).where(blobs.c.sha256 == sha)).first() is None:
        conn.execute(insert(blobs).values(sha256=sha, size=size, content_type=content_type))


@contextmanager
def _commit(store: Store, ref: ProjectRef, message: str) -> Iterator[tuple[Connection, int, _BlobGuard]]:
    guard = _BlobGuard(store)
    try:
        with store.engine.begin() as conn:
            rev = begin_commit(conn, ref.id, message)
            yield conn, rev, guard
    except BaseException:
        for sha in guard.added:
            store.blobs.delete(sha)
        raise


def parse_instances(raw: Iterable[Any], where: str = "instances") -> list[InstanceIn]:
    """Validate raw instance dicts into models; the error names the failing field."""
    return [validate(InstanceIn, item, f"{where}[{i}]") for i, item in enumerate(raw)]


def _instance_rows(
    project_id: int, file_id: int, width: int | None, height: int | None,
    items: list[InstanceIn], vocab: Vocabulary, rev: int, where: str,
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
        keyframe = inst.keyframe if inst.keyframe is not None else (True if inst.track_id is not None else None)
        rows.append({
            "project_id": project_id, "file_id": file_id, "frame_number": inst.frame_number,
            "label_id": label_id, "type": inst.type, "geometry": geom,
            "x_min": x_min, "y_min": y_min, "x_max": x_max, "y_max": y_max,
            "area": inst.area if inst.area is not None else geometry.area_of(inst.type, geom, bbox),
            "iscrowd": inst.iscrowd, "attributes": inst.attributes, "track_id": inst.track_id,
            "keyframe": keyframe, "range_start": geom["start"] if ranged else None,
            "range_end": geom["end"] if ranged else None,
            "machine_made": inst.machine_made, "created_rev": rev, "deleted_rev": None,
        })
    return rows


def refresh_derived(conn: Connection, file_ids: list[int], rev: int) -> None:
    """Bring the derived tables of ``file_ids`` (label counts, attribute index) up to the live
    instances, in the caller's commit."""
    refresh_label_counts(conn, file_ids, rev)
    refresh_attribute_index(conn, file_ids, rev)


def refresh_label_counts(conn: Connection, file_ids: list[int], rev: int) -> None:
    """Bring the versioned per-(file, label) counts of ``file_ids`` up to the live instances."""
    for start in range(0, len(file_ids), 500):
        chunk = file_ids[start:start + 500]
        want = Counter(
            (r.file_id, r.label_id)
            for r in conn.execute(
                select(instances.c.file_id, instances.c.label_id).where(
                    instances.c.file_id.in_(chunk), instances.c.deleted_rev.is_(None),
                    instances.c.label_id.is_not(None), instances.c.type.not_in(NOT_COUNTED),
                )
            )
        )
        have = {
            (r.file_id, r.label_id): (r.id, r.count)
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


def _insert_file(conn: Connection, ref: ProjectRef, rev: int, *, name: str, sha: str | None,
                 probe: Probe, metadata: dict[str, Any]) -> int:
    v = probe.video
    return conn.execute(
        insert(files).values(
            project_id=ref.id, type=probe.type, original_filename=name, blob_sha256=sha,
            width=probe.width, height=probe.height, text=probe.text, metadata=metadata, created_rev=rev,
            frame_count=v.frame_count if v else None, fps=v.fps if v else None,
            duration=v.duration if v else None, codec=v.codec if v else None,
            keyframes=v.keyframes if v else None,
        )
    ).inserted_primary_key[0]


def probe_upload(filename: str, data: bytes, where: str = "file") -> Probe:
    """What an upload is, by its name's suffix and its bytes; 422 when it is not readable."""
    if filename.lower().endswith(".txt"):
        try:
            return Probe("text", None, None, "text/plain; charset=utf-8", text=data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{where}: '{filename}' is not UTF-8 text", {"field": where}) from exc
    if video.is_video_name(filename):
        info = video.probe_video(data, where, filename)
        return Probe("video", info.width, info.height, info.content_type, video=info)
    width, height, mime = probe_image(data, where)
    return Probe("image", width, height, mime)


def add_file(
    store: Store, ref: ProjectRef, dataset: str, filename: str, data: bytes,
    instances_in: Iterable[Any] = (), metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Upload one file (image, video or UTF-8 text) into ``dataset`` with its instances: one commit.

    The name is stored sanitised (``safe_name``: no ``..``, no leading ``/``, no control
    characters); metadata must be an object whose keys hold no NUL."""
    filename = safe_name(filename, "file")
    metadata = check_metadata(metadata, "metadata")
    items = parse_instances(instances_in)
    probe = probe_upload(filename, data)
    with _commit(store, ref, f"add {filename}") as (conn, rev, guard):
        vocab = load_vocabulary(conn, ref.id, None)
        ds = ensure_dataset(conn, ref, dataset, rev)
        sha = guard.put(conn, data, probe.mime) if probe.type != "text" else None
        file_id = _insert_file(conn, ref, rev, name=filename, sha=sha, probe=probe, metadata=metadata or {})
        conn.execute(insert(dataset_files).values(dataset_id=ds.id, file_id=file_id, created_rev=rev))
        probe.check(items, "instances")
        rows = _instance_rows(ref.id, file_id, probe.width, probe.height, items, vocab, rev, "instances")
        if rows:
            conn.execute(insert(instances), rows)
        refresh_derived(conn, [file_id], rev)
    return {"id": file_id, "name": filename, "type": probe.type, "sha256": sha,
            "width": probe.width, "height": probe.height, "frame_count": probe.frame_count,
            "revision": rev, "instances": len(rows)}


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
    return [g.get("key") for g in conn.execute(
        select(instances.c.geometry).where(instances.c.file_id == file_id, instances.c.type == "span",
                                           instances.c.deleted_rev.is_(None))).scalars()]


def write_instances(store: Store, ref: ProjectRef, file_id: int, instances_in: Iterable[Any],
                    *, replace: bool) -> dict[str, Any]:
    """Add instances to a file, or replace all of its instances: one commit."""
    items = parse_instances(instances_in)
    with _commit(store, ref, f"{'replace' if replace else 'add'} instances of file {file_id}") as (conn, rev, _):
        row = _live_file(conn, ref, file_id)
        vocab = load_vocabulary(conn, ref.id, None)
        video.check_instances(items, row.frame_count, "instances")
        keys = () if replace else _span_keys(conn, file_id)
        text_service.check_instances(items, row.text, keys, "instances")
        rows = _instance_rows(ref.id, file_id, row.width, row.height, items, vocab, rev, "instances")
        removed = end_rows(conn, instances, instances.c.file_id == file_id, rev) if replace else 0
        if rows:
            conn.execute(insert(instances), rows)
        refresh_derived(conn, [file_id], rev)
    return {"file_id": file_id, "revision": rev, "added": len(rows), "removed": removed}


def delete_instance(store: Store, ref: ProjectRef, instance_id: int) -> dict[str, Any]:
    with _commit(store, ref, f"delete instance {instance_id}") as (conn, rev, _):
        file_id = conn.execute(
            select(instances.c.file_id).where(
                instances.c.id == instance_id, instances.c.project_id == ref.id,
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
    with _commit(store, ref, f"remove file {file_id}") as (conn, rev, _):
        removed = end_rows(
            conn, dataset_files,
            and_(dataset_files.c.dataset_id == dataset_id, dataset_files.c.file_id == file_id), rev,
        )
        if not removed:
            raise NotFound(f"file {file_id} is not in this dataset", {"file_id": file_id})
    return {"file_id": file_id, "revision": rev}


# --- COCO -------------------------------------------------------------------------------

def _coco_error(record: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{record}: {reason}", {"record": record, "reason": reason})


def coco_to_instance(ann: dict[str, Any], category: dict[str, Any]) -> InstanceIn:
    """One COCO annotation as one instance, keeping what a COCO export needs back."""
    bbox = ann.get("bbox")
    xyxy = [bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]] if bbox else None
    seg = ann.get("segmentation")
    rings = [[[r[i], r[i + 1]] for i in range(0, len(r) - 1, 2)] for r in seg] if isinstance(seg, list) else []
    kps = ann.get("keypoints") or []
    common = {"label": category["name"], "iscrowd": bool(ann.get("iscrowd", 0)),
              "area": ann.get("area"), "bbox": xyxy}
    if kps and category.get("keypoints"):
        points = [[kps[i], kps[i + 1], kps[i + 2]] for i in range(0, len(kps) - 2, 3)]
        geom: dict[str, Any] = {"points": points}
        if rings:
            geom["outline"] = rings
        return InstanceIn(type="keypoints", geometry=geom, **common)
    if rings:
        geom = {"points": rings[0]}
        if len(rings) > 1:
            geom["parts"] = rings[1:]
        return InstanceIn(type="polygon", geometry=geom, **common)
    if xyxy is None:
        raise ValueError("an annotation needs a bbox, a segmentation or keypoints")
    geom = dict(zip(("x_min", "y_min", "x_max", "y_max"), xyxy))
    if isinstance(seg, dict):
        geom["rle"] = seg
    return InstanceIn(type="box", geometry=geom, **common)


def import_coco(
    store: Store, ref: ProjectRef, dataset: str, coco: dict[str, Any],
    read_image: Callable[[dict[str, Any]], bytes], progress: Progress | None = None,
) -> dict[str, Any]:
    """Import a COCO detection/keypoints file into ``dataset`` as one commit.

    Everything is checked before the first row is written; the first bad record is named
    (``annotations[17] (id 4242): ...``) and nothing at all is written.
    """
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise _coco_error("file", "not a COCO file: no 'images' list")
    categories = {c["id"]: c for c in coco.get("categories", []) if isinstance(c, dict) and "id" in c}
    images = {}
    for i, img in enumerate(coco["images"]):
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            raise _coco_error(f"images[{i}]", "needs 'id' and 'file_name'")
        images[img["id"]] = img
    by_image: dict[Any, list[tuple[str, InstanceIn]]] = {k: [] for k in images}
    for i, ann in enumerate(coco.get("annotations", [])):
        record = f"annotations[{i}] (id {ann.get('id')})" if isinstance(ann, dict) else f"annotations[{i}]"
        if not isinstance(ann, dict):
            raise _coco_error(record, "not an object")
        if ann.get("image_id") not in images:
            raise _coco_error(record, f"image_id {ann.get('image_id')!r} is not in 'images'")
        if ann.get("category_id") not in categories:
            raise _coco_error(record, f"category_id {ann.get('category_id')!r} is not in 'categories'")
        try:
            inst = coco_to_instance(ann, categories[ann["category_id"]])
        except (ValidationError, ValueError, TypeError, IndexError, KeyError) as exc:
            raise _coco_error(record, f"malformed annotation ({exc})") from exc
        img = images[ann["image_id"]]
        try:
            geometry.normalise(inst, img.get("width"), img.get("height"), "annotation")
        except InvalidInput as exc:
            raise _coco_error(record, f"{exc.detail['reason']} (image '{img['file_name']}')") from exc
        by_image[ann["image_id"]].append((record, inst))

    label_specs = [LabelCreate(name=c["name"]) for c in categories.values()]
    label_extra = {
        c["name"]: {k: c[k] for k in ("supercategory", "keypoints", "skeleton") if k in c}
        for c in categories.values()
    }

    def records() -> Iterator[ImportRecord]:
        for image_id, img in images.items():
            meta = {k: v for k, v in img.items() if k not in ("file_name", "width", "height", "id")}
            meta["coco_id"] = image_id
            yield ImportRecord(
                where=f"images (id {image_id}, '{img['file_name']}')", name=img["file_name"],
                read=lambda img=img: read_image(img), metadata=meta,
                instances=[a for _, a in by_image[image_id]],
                declared=(img.get("width"), img.get("height")),
                instances_where=f"annotations of image {image_id}",
            )

    result = import_records(store, ref, dataset, records(), labels=label_specs, label_extra=label_extra,
                            progress=progress, total=len(images), message=f"import coco into {dataset}")
    return {**result, "instances": sum(len(v) for v in by_image.values())}


@dataclass
class ImportRecord:
    """One file of a bulk import: where it came from (for errors), its bytes and annotations."""

    where: str
    name: str
    read: Callable[[], bytes]
    metadata: dict[str, Any] = field(default_factory=dict)
    instances: list[InstanceIn] | list[dict[str, Any]] = field(default_factory=list)
    declared: tuple[int | None, int | None] = (None, None)
    instances_where: str | None = None


def _record_error(record: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{record}: {reason}", {"record": record, "reason": reason})


def ensure_attribute_groups(conn: Connection, project_id: int, rev: int,
                            specs: Iterable[AttributeGroupCreate]) -> None:
    """Create the attribute groups (with options) that do not exist yet, and missing options."""
    live = {
        r.name: r.id for r in conn.execute(
            select(attribute_groups.c.name, attribute_groups.c.id).where(
                attribute_groups.c.project_id == project_id, attribute_groups.c.deleted_rev.is_(None)))
    }
    for spec in specs:
        group_id = live.get(spec.name)
        have: set[str] = set()
        if group_id is None:
            group_id = conn.execute(insert(attribute_groups).values(
                project_id=project_id, name=spec.name, kind=spec.kind, created_rev=rev)).inserted_primary_key[0]
        else:
            have = set(conn.execute(select(attribute_options.c.name).where(
                attribute_options.c.group_id == group_id, attribute_options.c.deleted_rev.is_(None))).scalars())
        for option in spec.options:
            if option not in have:
                conn.execute(insert(attribute_options).values(group_id=group_id, name=option, created_rev=rev))


def import_records(
    store: Store, ref: ProjectRef, dataset: str, records: Iterable[ImportRecord], *,
    labels: list[LabelCreate] = (), label_extra: dict[str, dict[str, Any]] | None = None,  # type: ignore[assignment]
    attribute_groups_in: list[AttributeGroupCreate] = (),  # type: ignore[assignment]
    progress: Progress | None = None, total: int = 0, message: str | None = None,
) -> dict[str, Any]:
    """Write a stream of files with their instances into ``dataset`` as ONE commit.

    The format-agnostic core of every bulk import (COCO, YOLO, annostream and Diffgram
    JSON): records are consumed one at a time, so memory does not grow with the import; the
    first bad record raises InvalidInput naming it and the transaction, blobs included, is
    rolled back.
    """
    with _commit(store, ref, message or f"import into {dataset}") as (conn, rev, guard):
        ensure_labels(conn, ref.id, rev, list(labels), label_extra)
        ensure_attribute_groups(conn, ref.id, rev, attribute_groups_in)
        vocab = load_vocabulary(conn, ref.id, None)
        ds = ensure_dataset(conn, ref, dataset, rev)
        file_ids: list[int] = []
        n_files = n_instances = 0
        for rec in records:
            try:
                data = rec.read()
            except (OSError, KeyError) as exc:
                raise _record_error(rec.where, f"image file cannot be read ({exc})") from exc
            probe = probe_upload(rec.name, data, rec.where)
            width, height = probe.width, probe.height
            if probe.type == "image" and tuple(rec.declared) not in ((width, height), (None, None)):
                raise _record_error(rec.where, f"declared {rec.declared[0]}x{rec.declared[1]} "
                                               f"but the image is {width}x{height}")
            where = rec.instances_where or f"{rec.where}.instances"
            parsed = [i if isinstance(i, InstanceIn) else validate(InstanceIn, i, f"{where}[{k}]")
                      for k, i in enumerate(rec.instances)]
            probe.check(parsed, where)
            sha = guard.put(conn, data, probe.mime) if probe.type != "text" else None
            file_id = _insert_file(conn, ref, rev, name=rec.name, sha=sha, probe=probe, metadata=rec.metadata)
            conn.execute(insert(dataset_files).values(dataset_id=ds.id, file_id=file_id, created_rev=rev))
            rows = _instance_rows(ref.id, file_id, width, height, parsed, vocab, rev, where)
            if rows:
                conn.execute(insert(instances), rows)
            n_files += 1
            n_instances += len(rows)
            file_ids.append(file_id)
            if len(file_ids) >= 500:
                refresh_derived(conn, file_ids, rev)
                file_ids = []
            if progress:
                progress(n_files, total)
        refresh_derived(conn, file_ids, rev)
    return {"dataset": dataset, "files": n_files, "revision": rev, "instances": n_instances}


def stage_blob(store: Store, ref: ProjectRef, data: bytes) -> str:
    """Store an image's or a video's bytes ahead of a bulk import that refers to them by sha256."""
    try:
        _, _, mime = probe_image(data, "body")
    except InvalidInput as not_image:
        try:
            mime = video.probe_video(data, "body").content_type
        except InvalidInput:
            raise not_image from None
    sha, _ = store.blobs.put(data)
    with store.engine.begin() as conn:
        _record_blob(conn, sha, len(data), mime)
    return sha
