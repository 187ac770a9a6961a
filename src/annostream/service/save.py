"""Saved copies: one pinned view of a project written into a store of its own.

The copy is written as a single commit whose number is the source view's revision, with
the source's file and instance ids and label ids kept, so that the copy streams the very
same samples as the view it came from. Instances go through the same validation and row
building as any write (``ingest``), and blobs through the same guarded, content-addressed
path, so the copy is an ordinary store in every respect.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert, select

from annostream.errors import Conflict, InvalidInput
from annostream.schema import Item
from annostream.service.commit import guarded_blobs
from annostream.service.datasets import ensure_dataset
from annostream.service.ingest import (
    instance_rows,
    parse_instances,
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
        for lab in label_list:
            conn.execute(
                insert(labels).values(
                    project_id=project_id,
                    label_index=lab["id"],
                    name=lab["name"],
                    color=lab.get("color"),
                    spec=lab.get("spec") or {},
                    created_rev=rev,
                )
            )
        for group in groups:
            group_id = inserted_id(
                conn.execute(
                    insert(attribute_groups).values(
                        project_id=project_id,
                        name=group["name"],
                        kind=group["kind"],
                        created_rev=rev,
                    )
                )
            )
            for option in group["options"]:
                conn.execute(
                    insert(attribute_options).values(group_id=group_id, name=option, created_rev=rev)
                )
        vocab = load_vocabulary(conn, project_id, None)
        ds = ensure_dataset(conn, ref, dataset, rev)
        file_ids: list[int] = []
        n_instances = 0
        for item, blob in items:
            f = item["file"]
            sha = None
            if blob is not None:
                sha = guard.put(conn, blob, f.get("content_type") or "application/octet-stream")
                if sha != f["sha256"]:
                    raise InvalidInput(
                        f"file {item['id']}: its bytes do not match sha256 {f['sha256']}",
                        {"file_id": item["id"]},
                    )
            parent = f.get("parent_id") if f.get("parent_id") in file_ids else None
            conn.execute(
                insert(files).values(
                    id=item["id"],
                    project_id=project_id,
                    type=f["type"],
                    original_filename=f["name"],
                    blob_sha256=sha,
                    width=f["width"],
                    height=f["height"],
                    frame_count=f.get("frame_count"),
                    fps=f.get("fps"),
                    text=f.get("text"),
                    metadata=f.get("metadata") or {},
                    parent_id=parent,
                    frame_number=f.get("frame_number"),
                    created_rev=min(f["created_rev"], rev),
                )
            )
            conn.execute(insert(dataset_files).values(dataset_id=ds.id, file_id=item["id"], created_rev=rev))
            raw = [
                {k: v for k, v in inst.items() if k in _INSTANCE_FIELDS and v is not None}
                for inst in item["instances"]
            ]
            rows = instance_rows(
                project_id,
                item["id"],
                f["width"],
                f["height"],
                parse_instances(raw, f"file {item['id']}.instances"),
                vocab,
                rev,
                f"file {item['id']}.instances",
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
