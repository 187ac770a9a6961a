"""Bulk imports: records from any reader in ``formats/``, committed as ONE transaction.

Every import, whatever its format (COCO, YOLO, annostream JSON, Diffgram JSON, a folder of
images, the SDK's ``upload_many``) and whatever its transport, takes the same two steps:

1. stage: each record's image is probed and staged for the project (``service.staging``;
   over HTTP the client does it with ``PUT .../blobs``, locally ``import_source`` does it in
   batches). A record then names its image by sha256.
2. commit (``commit_records``): one transaction writes the files, their instances, the
   labels and attribute groups the source declares, and the dataset; the first bad record
   raises a 422 naming it (``where``) and the field, and nothing at all is written.

Invariants: a killed import leaves the store as it was (staged blobs only, which gc
collects); a record may name only blobs of its own project (the staging scoping rule);
an import sent again with the same idempotency key answers the first one's result and
commits nothing (the key is stored, per project, in the import's own transaction); a file
already in the dataset with the same name and bytes is skipped unless ``duplicates="keep"``,
and an import that would change nothing commits nothing.
"""

from __future__ import annotations

import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import orjson
from sqlalchemy import Connection, exists, insert, select
from sqlalchemy.exc import IntegrityError

from annostream.errors import InvalidInput
from annostream.formats import ImportSource, read_record_image, record_error
from annostream.paths import safe_name
from annostream.schema import AttributeGroupCreate, LabelCreate, validate
from annostream.service.commit import commit
from annostream.service.dataset_counts import Key, apply_counts, new_files
from annostream.service.datasets import ensure_dataset
from annostream.service.ingest import (
    Probe,
    check_metadata,
    derive_new,
    file_row,
    insert_files,
    insert_rows,
    instance_rows,
    parse_instances,
    probe_upload,
)
from annostream.service.labels import ensure_labels, load_vocabulary
from annostream.service.projects import ProjectRef
from annostream.service.staging import (
    StagedBlob,
    release_staged,
    resolve_blob,
    stage_blobs,
    unstage,
)
from annostream.store import Store
from annostream.store.tables import (
    attribute_groups,
    attribute_options,
    dataset_files,
    datasets,
    files,
    import_keys,
    instances,
    labels,
)
from annostream.store.versioning import head_revision

Progress = Callable[[int, int], None]
DUPLICATES = ("skip", "keep")
_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")
_STAGE_FILES = 64
_STAGE_BYTES = 32 << 20
_INT32 = 2**31 - 1


def check_key(key: str | None) -> str | None:
    """An idempotency key: 1-200 printable ASCII characters, or None."""
    if key is not None and not _KEY.match(key):
        raise InvalidInput(
            "Idempotency-Key: 1 to 200 printable ASCII characters, no spaces", {"field": "idempotency_key"}
        )
    return key


def _check_duplicates(duplicates: str) -> str:
    if duplicates not in DUPLICATES:
        raise InvalidInput(
            f"duplicates: '{duplicates}' is not one of {', '.join(DUPLICATES)}", {"field": "duplicates"}
        )
    return duplicates


def stored_result(store: Store, ref: ProjectRef, key: str | None) -> dict[str, Any] | None:
    """What the import with idempotency key ``key`` answered, when it committed."""
    if key is None:
        return None
    with store.engine.connect() as conn:
        found = conn.execute(
            select(import_keys.c.result).where(import_keys.c.project_id == ref.id, import_keys.c.key == key)
        ).scalar()
    return {**found, "replayed": True} if found is not None else None


@dataclass
class _Record:
    where: str
    name: str
    sha256: Any
    metadata: dict[str, Any]
    instances: Any
    width: int | None
    height: int | None
    text: str | None = None


def _dimension(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _INT32:
        raise InvalidInput(f"{field}: a positive integer (pixels), not {str(value)[:40]!r}", {"field": field})
    return value


def _text(value: Any, field: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{field}: a text file's text must be a string", {"field": field})
    return value


def _probe_blob(store: Store, conn: Connection, ref: ProjectRef, rec: _Record) -> Probe:
    """What the file of a record naming a blob is: an image from its staged or held size, a
    video probed from its bytes (its frames, rate and keyframes go on the file row)."""
    if rec.sha256 is None:
        raise InvalidInput(
            f"{rec.where}.sha256: missing, so the record names no image (and no image file was found for it)",
            {"record": rec.where, "field": f"{rec.where}.sha256"},
        )
    width, height, mime = resolve_blob(conn, ref, rec.sha256, f"{rec.where}.sha256")
    if mime.startswith("image/") or mime == "application/octet-stream":
        if (rec.width, rec.height) not in ((width, height), (None, None)):
            raise record_error(
                rec.where, f"declared {rec.width}x{rec.height} but the image is {width}x{height}"
            )
        return Probe("image", width, height, mime)
    return probe_upload(rec.name, store.blobs.get(rec.sha256), rec.where)


def _record(raw: Any, n: int) -> _Record:
    """A record checked field by field; the 422 names the record and the field."""
    if not isinstance(raw, dict):
        raise record_error(f"record {n}", f"not an object but {type(raw).__name__}")
    given = raw.get("where")
    where = given[:300] if isinstance(given, str) and given else f"record {n}"
    instances_in = raw.get("instances") if raw.get("instances") is not None else []
    if not isinstance(instances_in, list):
        raise InvalidInput(
            f"{where}.instances: must be a list", {"record": where, "field": f"{where}.instances"}
        )
    return _Record(
        where=where,
        name=safe_name(raw.get("name"), f"{where}.name"),
        sha256=raw.get("sha256"),
        metadata=check_metadata(raw.get("metadata"), f"{where}.metadata"),
        instances=instances_in,
        width=_dimension(raw.get("width"), f"{where}.width"),
        height=_dimension(raw.get("height"), f"{where}.height"),
        text=_text(raw.get("text"), f"{where}.text"),
    )


def _vocabulary(
    source: ImportSource,
) -> tuple[list[LabelCreate], dict[str, dict[str, Any]], list[AttributeGroupCreate]]:
    """The labels (with their format extras) and attribute groups a source declares, checked."""
    if not isinstance(source.labels, list) or not isinstance(source.attribute_groups, list):
        raise InvalidInput("header: 'labels' and 'attribute_groups' must be lists", {"field": "header"})
    specs, extra = [], {}
    for i, lab in enumerate(source.labels):
        at = f"header.labels[{i}]"
        if not isinstance(lab, dict):
            raise InvalidInput(f"{at}: not an object", {"field": at})
        specs.append(validate(LabelCreate, {"name": lab.get("name"), "color": lab.get("color")}, at))
        spec = lab.get("spec") or {}
        if not isinstance(spec, dict):
            raise InvalidInput(f"{at}.spec: must be an object", {"field": f"{at}.spec"})
        extra[specs[-1].name] = spec
    groups = []
    for i, g in enumerate(source.attribute_groups):
        at = f"header.attribute_groups[{i}]"
        if not isinstance(g, dict):
            raise InvalidInput(f"{at}: not an object", {"field": at})
        groups.append(
            validate(
                AttributeGroupCreate,
                {"name": g.get("name"), "kind": g.get("kind", "select"), "options": g.get("options", [])},
                at,
            )
        )
    return specs, extra, groups


def ensure_attribute_groups(
    conn: Connection, project_id: int, rev: int, specs: Iterable[AttributeGroupCreate]
) -> None:
    """Create the attribute groups (with options) that do not exist yet, and missing options."""
    live = {
        r.name: r.id
        for r in conn.execute(
            select(attribute_groups.c.name, attribute_groups.c.id).where(
                attribute_groups.c.project_id == project_id, attribute_groups.c.deleted_rev.is_(None)
            )
        )
    }
    for spec in specs:
        group_id = live.get(spec.name)
        have: set[str] = set()
        if group_id is None:
            made = conn.execute(
                insert(attribute_groups).values(
                    project_id=project_id, name=spec.name, kind=spec.kind, created_rev=rev
                )
            ).inserted_primary_key
            assert made is not None
            group_id = made[0]
        else:
            have = set(
                conn.execute(
                    select(attribute_options.c.name).where(
                        attribute_options.c.group_id == group_id, attribute_options.c.deleted_rev.is_(None)
                    )
                ).scalars()
            )
        for option in spec.options:
            if option not in have:
                conn.execute(
                    insert(attribute_options).values(group_id=group_id, name=option, created_rev=rev)
                )


def _in_dataset(conn: Connection, ref: ProjectRef, dataset_id: int, name: str, sha: str, rev: int) -> bool:
    """Whether the dataset held a live file called ``name`` with these bytes before commit ``rev``.

    Files are found by their blob (an index), then checked for membership: the cost does not
    grow with the dataset.
    """
    member = exists().where(
        dataset_files.c.file_id == files.c.id,
        dataset_files.c.dataset_id == dataset_id,
        dataset_files.c.deleted_rev.is_(None),
        dataset_files.c.created_rev < rev,
    )
    return (
        conn.execute(
            select(files.c.id)
            .where(
                files.c.project_id == ref.id,
                files.c.blob_sha256 == sha,
                files.c.original_filename == name,
                files.c.deleted_rev.is_(None),
                member,
            )
            .limit(1)
        ).first()
        is not None
    )


def _changed_besides_files(conn: Connection, ref: ProjectRef, rev: int) -> bool:
    """Whether commit ``rev`` created labels, attribute groups or options, or a dataset."""
    made = [
        exists().where(labels.c.project_id == ref.id, labels.c.created_rev == rev),
        exists().where(attribute_groups.c.project_id == ref.id, attribute_groups.c.created_rev == rev),
        exists().where(
            attribute_options.c.created_rev == rev,
            attribute_options.c.group_id.in_(
                select(attribute_groups.c.id).where(attribute_groups.c.project_id == ref.id)
            ),
        ),
        exists().where(datasets.c.project_id == ref.id, datasets.c.created_rev == rev),
    ]
    return any(conn.execute(select(e)).scalar() for e in made)


def _probe_cached(
    store: Store, conn: Connection, ref: ProjectRef, rec: _Record, seen: dict[str, Probe]
) -> Probe:
    """:func:`_probe_blob`, asked once per image blob in an import (a blob staged or held
    stays so for the whole transaction); a record's declared size is still checked."""
    known = seen.get(rec.sha256) if isinstance(rec.sha256, str) else None
    if known is None or known.type != "image":
        probe = _probe_blob(store, conn, ref, rec)
        if probe.type == "image":
            seen[rec.sha256] = probe
        return probe
    if (rec.width, rec.height) not in ((known.width, known.height), (None, None)):
        raise record_error(
            rec.where, f"declared {rec.width}x{rec.height} but the image is {known.width}x{known.height}"
        )
    return known


class _Batch:
    """Files of an import with their instances, written a batch at a time: the files in one
    statement (their ids returned in order), then their dataset rows, instances and derived
    rows (label counts, attribute index) in one statement each."""

    FILES = 1000
    INSTANCES = 20_000

    def __init__(self, conn: Connection, dataset_id: int, rev: int) -> None:
        self.conn, self.dataset_id, self.rev = conn, dataset_id, rev
        self.files: list[dict[str, Any]] = []
        self.instances: list[list[dict[str, Any]]] = []
        self.size = 0
        self.counts: Counter[Key] = Counter()  # what the files add to the dataset's counts

    def add(self, file: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        self.files.append(file)
        self.instances.append(rows)
        self.size += len(rows)
        if len(self.files) >= self.FILES or self.size >= self.INSTANCES:
            self.flush()

    def flush(self) -> None:
        ids = insert_files(self.conn, self.files)
        insert_rows(
            self.conn,
            dataset_files,
            [{"dataset_id": self.dataset_id, "file_id": i, "created_rev": self.rev} for i in ids],
        )
        rows = []
        for file_id, file_rows in zip(ids, self.instances, strict=True):
            for row in file_rows:
                row["file_id"] = file_id
            rows.extend(file_rows)
        insert_rows(self.conn, instances, rows)
        derive_new(self.conn, rows, self.rev)
        new_files(self.counts, self.dataset_id, rows)
        self.files, self.instances, self.size = [], [], 0


# An import writing at least this many rows refreshes the planner's statistics in its commit.
ANALYZE_ROWS = 20_000


def refresh_statistics(conn: Connection) -> None:
    """The query planner's statistics brought up to the data (SQLite: sampled, so it costs
    milliseconds at any size): without them SQLite probes a derived table through the wrong
    index, and a first page of ``labels.cat > 2`` costs hundreds of times what it reads."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA analysis_limit=1000")
        conn.exec_driver_sql("ANALYZE")
    elif conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            "ANALYZE files, dataset_files, instances, file_label_counts, file_attribute_values,"
            " dataset_counts"
        )


class _Unchanged(Exception):
    """Raised inside a commit that would change nothing, to roll its revision back."""


def commit_records(
    store: Store,
    ref: ProjectRef,
    dataset: str,
    source: ImportSource,
    *,
    message: str | None = None,
    key: str | None = None,
    duplicates: str = "skip",
) -> dict[str, Any]:
    """Write records that name their images by sha256 into ``dataset``: ONE commit, or nothing.

    Records are consumed one at a time (memory does not grow with the import).
    """
    key, duplicates = check_key(key), _check_duplicates(duplicates)
    if (done := stored_result(store, ref, key)) is not None:
        return done
    specs, extra, groups = _vocabulary(source)
    counts = {"files": 0, "instances": 0, "skipped": 0}
    try:
        with commit(store, ref, message or f"import into {dataset}") as (conn, rev, _):
            ensure_labels(conn, ref.id, rev, specs, extra)
            ensure_attribute_groups(conn, ref.id, rev, groups)
            vocab = load_vocabulary(conn, ref.id, None)
            ds = ensure_dataset(conn, ref, dataset, rev)
            # Only files the dataset held before this import count as duplicates.
            check = (
                duplicates == "skip"
                and conn.execute(
                    select(dataset_files.c.id)
                    .where(dataset_files.c.dataset_id == ds.id, dataset_files.c.deleted_rev.is_(None))
                    .limit(1)
                ).first()
            )
            batch = _Batch(conn, ds.id, rev)
            blobs: dict[str, Probe] = {}  # sha256 -> what it is, resolved once per import
            used: set[str] = set()
            for n, raw in enumerate(source.records, 1):
                rec = _record(raw, n)
                if rec.text is not None:  # a text file: its text is its content, no blob
                    sha, probe = None, Probe("text", None, None, "text/plain; charset=utf-8", text=rec.text)
                else:
                    sha, probe = rec.sha256, _probe_cached(store, conn, ref, rec, blobs)
                    used.add(sha)
                    if check and _in_dataset(conn, ref, ds.id, rec.name, sha, rev):
                        counts["skipped"] += 1
                        continue
                where = f"{rec.where}.instances"
                parsed = parse_instances(rec.instances, where, vocab)
                probe.check(parsed, where)
                rows = instance_rows(ref.id, 0, probe.width, probe.height, parsed, vocab, rev, where)
                batch.add(
                    file_row(ref, rev, name=rec.name, sha=sha, probe=probe, metadata=rec.metadata), rows
                )
                counts["files"] += 1
                counts["instances"] += len(rows)
            batch.flush()
            apply_counts(conn, batch.counts, rev)
            if counts["files"] + counts["instances"] >= ANALYZE_ROWS:
                refresh_statistics(conn)
            release_staged(conn, ref, sorted(used))
            result = {"dataset": dataset, **counts, "revision": rev}
            if not counts["files"] and not _changed_besides_files(conn, ref, rev):
                raise _Unchanged
            if key is not None:
                conn.execute(insert(import_keys).values(project_id=ref.id, key=key, result=result))
    except _Unchanged:
        with store.engine.begin() as conn:
            result = {"dataset": dataset, **counts, "revision": head_revision(conn, ref.id)}
            if key is not None:
                conn.execute(insert(import_keys).values(project_id=ref.id, key=key, result=result))
    except IntegrityError:
        # The same key committed concurrently: answer what that import answered.
        if (done := stored_result(store, ref, key)) is not None:
            return done
        raise
    return result


def ndjson_source(lines: Iterable[bytes]) -> ImportSource:
    """An NDJSON import body as a source: line 1 the header (``labels``, ``attribute_groups``,
    ``total``), then one record a line. Images come only from blobs staged for the project:
    a record's ``image_path`` and ``data`` are dropped, never read on the server."""
    it = iter(lines)
    try:
        head = orjson.loads(next(it, b""))
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body line 1: not a valid header ({exc})", {"record": "line 1"}) from exc
    if not isinstance(head, dict):
        raise InvalidInput("body line 1: the header must be an object", {"record": "line 1"})

    def records() -> Iterator[Any]:
        for n, line in enumerate(it, 2):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise InvalidInput(f"body line {n}: not valid JSON ({exc})", {"record": f"line {n}"}) from exc
            if isinstance(record, dict):
                record.pop("image_path", None)
                record.pop("data", None)
                record.setdefault("where", f"body line {n}")
            yield record

    return ImportSource(
        head.get("labels", []), head.get("attribute_groups", []), records(), head.get("total")
    )


def _spool_lines(spool: IO[bytes]) -> Iterator[dict[str, Any]]:
    spool.seek(0)
    for line in spool:
        yield orjson.loads(line)


def import_source(
    store: Store,
    ref: ProjectRef,
    dataset: str,
    source: ImportSource,
    *,
    progress: Progress | None = None,
    fmt: str = "records",
    key: str | None = None,
    duplicates: str = "skip",
) -> dict[str, Any]:
    """Import what a reader yields, in this process: stage the images, then ``commit_records``.

    ``progress(n, total)`` counts records staged. A failure takes back what this import
    staged; a kill leaves staged blobs for gc.
    """
    key, duplicates = check_key(key), _check_duplicates(duplicates)
    if (done := stored_result(store, ref, key)) is not None:
        return done
    staged: list[StagedBlob] = []
    try:
        with tempfile.TemporaryFile() as spool:
            batch: list[tuple[dict[str, Any], bytes | None]] = []

            def flush() -> None:
                blobs = iter(
                    stage_blobs(store, ref, [(data, rec["where"]) for rec, data in batch if data is not None])
                )
                for rec, data in batch:
                    if data is not None:
                        blob = next(blobs)
                        staged.append(blob)
                        rec = {**rec, "sha256": blob.sha256}
                    try:
                        spool.write(
                            orjson.dumps({k: v for k, v in rec.items() if k not in ("data", "image_path")})
                            + b"\n"
                        )
                    except TypeError as exc:
                        raise record_error(
                            str(rec.get("where")), f"metadata or instances are not JSON ({exc})"
                        ) from exc
                batch.clear()

            size = 0
            for n, rec in enumerate(source.records, 1):
                if not isinstance(rec, dict):
                    raise record_error(f"record {n}", f"not an object but {type(rec).__name__}")
                rec.setdefault("where", f"record {n}")
                data = read_record_image(rec)
                batch.append((rec, data))
                size += len(data or b"")
                if len(batch) >= _STAGE_FILES or size >= _STAGE_BYTES:
                    flush()
                    size = 0
                if progress:
                    progress(n, source.total or 0)
            flush()
            staged_source = ImportSource(
                source.labels, source.attribute_groups, _spool_lines(spool), source.total
            )
            return commit_records(
                store,
                ref,
                dataset,
                staged_source,
                message=f"import {fmt} into {dataset}",
                key=key,
                duplicates=duplicates,
            )
    except BaseException:
        unstage(store, ref, staged)
        raise
