"""The service side of the declared operations whose domain functions predate the table.

Each function adapts one declaration's arguments (``store``, the granted ``ProjectRef`` or
``Principal``, path and query parameters, ``body``) to the domain modules, and returns what
the operation's reply kind says: JSON-able values, ``(ids, revision)``, an ``ItemBatch``, a
``BlobRead``, a ``derived.Picture`` or a ``ZipExport``. No HTTP here: rendering is the server's, decoding the
client's. A new operation may register its domain function directly (labels.label_counts).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from annostream.errors import BadRequest
from annostream.schema import (
    AttributeGroupCreate,
    BlobMode,
    ChangePage,
    DatasetCreate,
    InstancesWrite,
    ItemsBatchRequest,
    KeyCreate,
    LabelCreate,
    ProjectCreate,
    TagCreate,
)
from annostream.service import (
    changes,
    datasets,
    export,
    frame_picture,  # noqa: F401  (registers get_frame)
    frames,  # noqa: F401  (registers frame_ids)
    imports,
    ingest,
    items,
    labels,
    projects,
    revisions,
    staging,
)
from annostream.service.projects import Principal, ProjectRef
from annostream.service.registry import implements, implements_async
from annostream.store import Store

# --- projects, keys, vocabulary ----------------------------------------------------------


@implements("list_projects")
def list_projects(store: Store, who: Principal) -> list[dict[str, Any]]:
    return projects.list_projects(store, who)


@implements("create_project")
def create_project(store: Store, who: Principal, body: ProjectCreate) -> dict[str, Any]:
    return projects.create_project(store, who, body)


@implements("get_project")
def get_project(store: Store, ref: ProjectRef) -> dict[str, Any]:
    return {
        "string_id": ref.string_id,
        "name": ref.name,
        "is_public": ref.is_public,
        "role": ref.role,
        "revision": labels.current_revision(store, ref),
    }


@implements("create_key")
def create_key(store: Store, ref: ProjectRef, body: KeyCreate) -> dict[str, Any]:
    return projects.create_key(store, ref, body.role)


@implements("list_keys")
def list_keys(store: Store, ref: ProjectRef) -> list[dict[str, Any]]:
    return projects.list_keys(store, ref)


@implements("revoke_key")
def revoke_key(store: Store, ref: ProjectRef, client_id: str) -> dict[str, Any]:
    return projects.revoke_key(store, ref, client_id)


@implements("list_labels")
def list_labels(store: Store, ref: ProjectRef, as_of: int | None = None) -> list[dict[str, Any]]:
    return labels.list_labels(store, ref, as_of)


@implements("create_label")
def create_label(store: Store, ref: ProjectRef, body: LabelCreate) -> dict[str, Any]:
    return labels.create_label(store, ref, body)


@implements("list_attribute_groups")
def list_attribute_groups(store: Store, ref: ProjectRef, as_of: int | None = None) -> list[dict[str, Any]]:
    return labels.list_attribute_groups(store, ref, as_of)


@implements("create_attribute_group")
def create_attribute_group(store: Store, ref: ProjectRef, body: AttributeGroupCreate) -> dict[str, Any]:
    return labels.create_attribute_group(store, ref, body)


# --- datasets and reads ------------------------------------------------------------------


@implements("list_datasets")
def list_datasets(store: Store, ref: ProjectRef, as_of: int | None = None) -> list[dict[str, Any]]:
    return datasets.list_datasets(store, ref, as_of)


@implements("create_dataset")
def create_dataset(store: Store, ref: ProjectRef, body: DatasetCreate) -> dict[str, Any]:
    return datasets.create_dataset(store, ref, body.name)


@implements("get_dataset")
def get_dataset(store: Store, ref: ProjectRef, dataset: str, as_of: int | None = None) -> dict[str, Any]:
    ds = datasets.get_dataset(store, ref, dataset, as_of)
    count, rev = datasets.slice_count(store, ds, None, as_of)
    return {"id": ds.id, "name": ds.name, "files": count, "revision": rev}


@implements("slice_ids")
def slice_ids(
    store: Store, ref: ProjectRef, dataset: str, query: str | None = None, as_of: int | None = None
) -> tuple[np.ndarray, int]:
    return datasets.slice_ids(store, datasets.get_dataset(store, ref, dataset, as_of), query, as_of)


@implements("slice_count")
def slice_count(
    store: Store, ref: ProjectRef, dataset: str, query: str | None = None, as_of: int | None = None
) -> dict[str, int]:
    count, rev = datasets.slice_count(store, datasets.get_dataset(store, ref, dataset, as_of), query, as_of)
    return {"count": count, "revision": rev}


@implements("slice_page")
def slice_page(
    store: Store,
    ref: ProjectRef,
    dataset: str,
    query: str | None = None,
    as_of: int | None = None,
    after: int | None = None,
    limit: int = 64,
    blobs: BlobMode = "none",
) -> items.ItemBatch:
    """The first items of a slice without listing its ids: a keyset page, read at one revision."""
    ds = datasets.get_dataset(store, ref, dataset, as_of)
    found, rev = items.page_items(store, ds, query=query, as_of=as_of, after=after, limit=limit)
    return items.with_blobs(store, ref, found, rev, blobs)


@implements("items_batch")
def items_batch(store: Store, ref: ProjectRef, body: ItemsBatchRequest) -> items.ItemBatch:
    return items.read_batch(store, ref, body.ids, body.as_of, body.blobs)


@implements("get_blob")
def get_blob(store: Store, ref: ProjectRef, sha256: str) -> items.BlobRead:
    return items.open_blob(store, ref, sha256)


# --- writes ------------------------------------------------------------------------------


@implements("upload_file")
def upload_file(store: Store, ref: ProjectRef, dataset: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body``: ``filename``, ``data`` (bytes), ``instances`` (list), ``metadata`` (dict)."""
    return ingest.add_file(
        store,
        ref,
        dataset,
        body.get("filename") or "upload",
        body["data"],
        body.get("instances") or [],
        body.get("metadata"),
    )


@implements("remove_file")
def remove_file(store: Store, ref: ProjectRef, dataset: str, file_id: int) -> dict[str, Any]:
    return ingest.remove_file(store, ref, datasets.get_dataset(store, ref, dataset).id, file_id)


@implements("add_instances")
def add_instances(store: Store, ref: ProjectRef, file_id: int, body: InstancesWrite) -> dict[str, Any]:
    return ingest.write_instances(store, ref, file_id, body.instances, replace=False)


@implements("replace_instances")
def replace_instances(store: Store, ref: ProjectRef, file_id: int, body: InstancesWrite) -> dict[str, Any]:
    return ingest.write_instances(store, ref, file_id, body.instances, replace=True)


@implements("delete_instance")
def delete_instance(store: Store, ref: ProjectRef, instance_id: int) -> dict[str, Any]:
    return ingest.delete_instance(store, ref, instance_id)


@implements("stage_blob")
def stage_blob(store: Store, ref: ProjectRef, body: bytes) -> dict[str, Any]:
    """Stage an image for this project, for an import that names it by sha256 (idempotent)."""
    return {"sha256": staging.stage_blobs(store, ref, [(body, "body")])[0].sha256, "size": len(body)}


@implements("import_coco")
def import_coco(
    store: Store,
    ref: ProjectRef,
    dataset: str,
    body: Any,
    format: str = "coco",
    shapes: str = "auto",
    duplicates: str = "skip",
    key: str | None = None,
) -> dict[str, Any]:
    """A COCO document whose images carry the ``sha256`` of staged blobs: one commit or nothing."""
    if format != "coco":
        raise BadRequest(f"unsupported import format '{format}'", {"format": format})
    from annostream.formats.coco import read_coco

    return imports.commit_records(
        store,
        ref,
        dataset,
        read_coco(body, None, shapes),
        message=f"import coco into {dataset}",
        key=key,
        duplicates=duplicates,
    )


@implements("import_records")
def import_records(
    store: Store,
    ref: ProjectRef,
    dataset: str,
    body: Iterable[bytes],
    format: str = "records",
    duplicates: str = "skip",
    key: str | None = None,
) -> dict[str, Any]:
    """NDJSON lines: a header (labels, attribute_groups, total), then one record a line naming
    its image by the sha256 of a blob staged for this project. One commit, or nothing."""
    return imports.commit_records(
        store,
        ref,
        dataset,
        imports.ndjson_source(body),
        message=f"import {format} into {dataset}",
        key=key,
        duplicates=duplicates,
    )


@dataclass(frozen=True)
class ZipExport:
    """A slice's export as zip chunks made on the fly, with its pinned revision and count."""

    chunks: Iterator[bytes]
    revision: int
    count: int
    filename: str


@implements("export")
def export_zip(
    store: Store,
    ref: ProjectRef,
    dataset: str,
    format: str = "json",
    query: str | None = None,
    as_of: int | None = None,
    images: bool = True,
) -> ZipExport:
    """Everything that can fail (format, query, revision) is checked before the first chunk."""
    ds = datasets.get_dataset(store, ref, dataset, as_of)
    prepared = export.prepare(store, ds, format, query, as_of, images)
    ctx, count = prepared
    chunks = export.stream_zip(
        lambda sink: export.export_slice(
            store, ds, format, sink, query=query, as_of=ctx.revision, images=images, prepared=prepared
        )
    )
    name = f"{ref.string_id}-{dataset}-r{ctx.revision}-{format}.zip".replace("/", "_").replace('"', "")
    return ZipExport(chunks, ctx.revision, count, name)


# --- revisions: tags and the change feed -------------------------------------------------


@implements("list_tags")
def list_tags(store: Store, ref: ProjectRef) -> list[dict[str, Any]]:
    return revisions.list_tags(store, ref)


@implements("create_tag")
def create_tag(store: Store, ref: ProjectRef, body: TagCreate) -> dict[str, Any]:
    return revisions.create_tag(store, ref, body.name, body.rev)


@implements("get_tag")
def get_tag(store: Store, ref: ProjectRef, name: str) -> dict[str, Any]:
    return revisions.get_tag(store, ref, name)


@implements("delete_tag")
def delete_tag(store: Store, ref: ProjectRef, name: str) -> dict[str, Any]:
    return revisions.delete_tag(store, ref, name)


@implements("changes")
def change_feed(
    store: Store,
    ref: ProjectRef,
    since: int = 0,
    wait: float = 0.0,
    dataset: str | None = None,
    query: str | None = None,
    limit: int = 1000,
) -> ChangePage:
    """Events of the commits after ``since``; long-polls up to ``wait`` seconds while there are none."""
    return changes.wait_for_changes(store, ref, since, wait, dataset=dataset, query=query, limit=limit)


@implements_async("changes")
async def change_feed_async(
    store: Store,
    ref: ProjectRef,
    since: int = 0,
    wait: float = 0.0,
    dataset: str | None = None,
    query: str | None = None,
    limit: int = 1000,
) -> ChangePage:
    return await changes.wait_for_changes_async(
        store, ref, since, wait, dataset=dataset, query=query, limit=limit
    )
