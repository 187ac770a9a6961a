"""Saved copies: one pinned view of a project written into a store of its own.

The copy is written as a single commit whose number is the source view's revision, with
the source's file and instance ids and label ids kept, so that the copy streams the very
same samples as the view it came from. The source is not trusted: labels and attribute
groups are validated as their create routes validate them, every file is probed from its
bytes as an upload is (its type, size, content type and video facts come from the probe, and
a copy whose source claims otherwise is refused), names and metadata pass the upload's
checks, instances go through the same validation and row building as any write (``ingest``),
and blobs through the same guarded, content-addressed path. So the copy is an ordinary
store in every respect, whatever the server it was read from sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert, select

from annostream.errors import Conflict, InvalidInput
from annostream.paths import safe_name
from annostream.schema import AttributeGroupCreate, FileInfo, Item, LabelCreate, validate
from annostream.service.commit import guarded_blobs
from annostream.service.datasets import ensure_dataset
from annostream.service.ingest import (
    Probe,
    check_metadata,
    file_row,
    instance_rows,
    parse_instances,
    probe_text,
    probe_upload,
    refresh_derived,
)
from annostream.service.labels import load_vocabulary
from annostream.service.projects import ProjectRef
from annostream.store import Store
from annostream.store.db import inserted_id
from annostream.store.tables import (
    attribute_groups,
    attribute_options,
    dataset_files,
    files,
    instances,
    labels,
    projects,
)
from annostream.store.versioning import begin_commit

_LABEL_FIELDS = ("name", "color")
_INSTANCE_FIELDS = (
    "type",
    "label",
    "geometry",
    "attributes",
    "frame_number",
    "track_id",
    "machine_made",
    "iscrowd",
    "area",
    "bbox",
)


def save_snapshot(
    store: Store,
    *,
    string_id: str,
    name: str,
    revision: int,
    label_list: list[dict[str, Any]],
    groups: list[dict[str, Any]],
    dataset: str,
    items: Iterable[tuple[Item, bytes | None]],
) -> dict[str, Any]:
    """Create project ``string_id`` in ``store`` holding ``items`` (as read at ``revision``)
    in ``dataset``: all in one transaction, or nothing (blobs it added are taken back)."""
    with guarded_blobs(store) as guard, store.engine.begin() as conn:
        if conn.execute(select(projects.c.id).where(projects.c.string_id == string_id)).first():
            raise Conflict(f"project '{string_id}' already exists in the target store")
        if conn.execute(select(files.c.id).limit(1)).first():
            raise Conflict(
                "an offline copy keeps the source's file ids, so it needs a store that holds no files yet"
            )
        project_id = inserted_id(
            conn.execute(
                insert(projects).values(
                    string_id=string_id,
                    name=name,
                    is_public=False,
                    head_rev=max(revision - 1, 0),
                    counts_from=0,  # the copy's commit writes its derived rows
                )
            )
        )
        ref = ProjectRef(project_id, string_id, name, False, "admin")
        rev = begin_commit(conn, project_id, f"offline copy of {string_id}/{dataset} at {revision}")
        for n, lab in enumerate(label_list):
            where = f"labels[{n}]"
            spec = validate(LabelCreate, {k: lab.get(k) for k in _LABEL_FIELDS}, where)
            index = lab.get("id")
            if not isinstance(index, int) or isinstance(index, bool) or not 0 < index < 2**31:
                raise InvalidInput(f"{where}.id: a label id is a positive int32", {"field": f"{where}.id"})
            conn.execute(
                insert(labels).values(
                    project_id=project_id,
                    label_index=index,
                    name=spec.name,
                    color=spec.color,
                    spec=check_metadata(lab.get("spec"), f"{where}.spec"),
                    created_rev=rev,
                )
            )
        for n, raw_group in enumerate(groups):
            group = validate(AttributeGroupCreate, raw_group, f"attribute_groups[{n}]")
            group_id = inserted_id(
                conn.execute(
                    insert(attribute_groups).values(
                        project_id=project_id, name=group.name, kind=group.kind, created_rev=rev
                    )
                )
            )
            for option in group.options:
                conn.execute(
                    insert(attribute_options).values(group_id=group_id, name=option, created_rev=rev)
                )
        vocab = load_vocabulary(conn, project_id, None)
        ds = ensure_dataset(conn, ref, dataset, rev)
        file_ids: list[int] = []
        n_instances = 0
        for item, blob in items:
            f = item["file"]
            where = f"file {item['id']}"
            name = safe_name(f["name"], f"{where}.name")
            probe = _probe(name, f, blob, where)
            sha = None
            if blob is not None:
                sha = guard.put(conn, blob, probe.mime)
                if sha != f["sha256"]:
                    raise InvalidInput(
                        f"{where}: its bytes do not match sha256 {f['sha256']}", {"file_id": item["id"]}
                    )
            row = file_row(
                ref, rev, name=name, sha=sha, probe=probe, metadata=check_metadata(f.get("metadata"), where)
            )
            parent = f.get("parent_id") if f.get("parent_id") in file_ids else None
            row.update(
                id=item["id"],
                parent_id=parent,
                frame_number=f.get("frame_number") if parent is not None else None,
                created_rev=min(f["created_rev"], rev),
            )
            conn.execute(insert(files).values(**row))
            conn.execute(insert(dataset_files).values(dataset_id=ds.id, file_id=item["id"], created_rev=rev))
            raw = [
                {k: v for k, v in inst.items() if k in _INSTANCE_FIELDS and v is not None}
                for inst in item["instances"]
            ]
            parsed = parse_instances(raw, f"{where}.instances")
            probe.check(parsed, f"{where}.instances")
            rows = instance_rows(
                project_id, item["id"], probe.width, probe.height, parsed, vocab, rev, f"{where}.instances"
            )
            for row, inst in zip(rows, item["instances"], strict=True):
                row["id"] = inst["id"]
            if rows:
                conn.execute(insert(instances), rows)
            file_ids.append(item["id"])
            n_instances += len(rows)
        refresh_derived(conn, file_ids, rev)
    return {
        "project": string_id,
        "dataset": dataset,
        "revision": rev,
        "files": len(file_ids),
        "instances": n_instances,
    }


def _probe(name: str, f: FileInfo, blob: bytes | None, where: str) -> Probe:
    """The file as an upload of ``blob`` (or of its text) would be; 422 naming the field the
    source's claim differs in (its type or size), since the copy must stream what it did."""
    if blob is not None:
        probe = probe_upload(name, blob, where)
    elif f["type"] == "text" and isinstance(f.get("text"), str):
        probe = probe_text(name, str(f["text"]).encode("utf-8"), where)
    else:
        raise InvalidInput(f"{where}: a {f['type']} file arrived without its bytes", {"field": where})
    for field in ("type", "width", "height"):
        if f.get(field) != getattr(probe, field):
            raise InvalidInput(
                f"{where}.{field}: the source says {f.get(field)!r}, its bytes {getattr(probe, field)!r}",
                {"field": f"{where}.{field}"},
            )
    return probe
