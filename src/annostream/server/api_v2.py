"""The native wire API, ``/api/v2``: each route authorises, calls the service, renders."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import anyio.to_thread
import orjson
from fastapi import (
    APIRouter,
    Body,
    Depends,
    File,
    Form,
    Header,
    Query,
    Request,
    UploadFile,
)
from fastapi.responses import (
    FileResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from annostream import frames
from annostream.errors import BadRequest, InvalidInput
from annostream.schema import (
    AttributeGroupCreate,
    DatasetCreate,
    InstancesWrite,
    ItemsBatchRequest,
    KeyCreate,
    LabelCreate,
    ProjectCreate,
    Role,
    TagCreate,
)
from annostream.server.auth import principal
from annostream.service import (
    changes,
    datasets,
    imports,
    ingest,
    items,
    labels,
    projects,
    revisions,
    staging,
)
from annostream.service.datasets import DatasetRef
from annostream.service.projects import Principal, ProjectRef
from annostream.store import Store
from annostream.store.blobs import get_many

router = APIRouter(prefix="/api/v2")
PAGE = 500
FRAME_CHUNK = 1 << 20

Caller = Annotated[Principal, Depends(principal)]
AsOf = Annotated[int | None, Query(ge=0)]
QueryText = Annotated[str | None, Query(max_length=10_000)]


def _store(request: Request) -> Store:
    return request.app.state.store


def _project(request: Request, who: Principal, project: str, need: Role = "viewer") -> ProjectRef:
    return projects.authorize(_store(request), who, project, need)


def _dataset(request: Request, who: Principal, project: str, dataset: str,
             as_of: int | None = None) -> DatasetRef:
    return datasets.get_dataset(_store(request), _project(request, who, project), dataset, as_of)


# --- projects, keys, vocabulary --------------------------------------------------------

@router.get("/projects")
def list_projects(request: Request, who: Caller) -> list[dict[str, Any]]:
    return projects.list_projects(_store(request), who)


@router.post("/projects", status_code=201)
def create_project(request: Request, who: Caller, spec: ProjectCreate) -> dict[str, Any]:
    return projects.create_project(_store(request), who, spec)


@router.get("/projects/{project}")
def get_project(request: Request, who: Caller, project: str) -> dict[str, Any]:
    ref = _project(request, who, project)
    return {"string_id": ref.string_id, "name": ref.name, "is_public": ref.is_public,
            "role": ref.role, "revision": labels.current_revision(_store(request), ref)}


@router.post("/projects/{project}/keys", status_code=201)
def create_key(request: Request, who: Caller, project: str, spec: KeyCreate) -> dict[str, Any]:
    return projects.create_key(_store(request), who, project, spec.role)


@router.get("/projects/{project}/labels")
def list_labels(request: Request, who: Caller, project: str, as_of: AsOf = None) -> list[dict[str, Any]]:
    return labels.list_labels(_store(request), _project(request, who, project), as_of)


@router.post("/projects/{project}/labels", status_code=201)
def create_label(request: Request, who: Caller, project: str, spec: LabelCreate) -> dict[str, Any]:
    return labels.create_label(_store(request), _project(request, who, project, "editor"), spec)


@router.get("/projects/{project}/attribute_groups")
def list_attribute_groups(request: Request, who: Caller, project: str,
                          as_of: AsOf = None) -> list[dict[str, Any]]:
    return labels.list_attribute_groups(_store(request), _project(request, who, project), as_of)


@router.post("/projects/{project}/attribute_groups", status_code=201)
def create_attribute_group(request: Request, who: Caller, project: str,
                           spec: AttributeGroupCreate) -> dict[str, Any]:
    ref = _project(request, who, project, "editor")
    return labels.create_attribute_group(_store(request), ref, spec)


# --- datasets and reads ----------------------------------------------------------------

@router.get("/projects/{project}/datasets")
def list_datasets(request: Request, who: Caller, project: str, as_of: AsOf = None) -> list[dict[str, Any]]:
    return datasets.list_datasets(_store(request), _project(request, who, project), as_of)


@router.post("/projects/{project}/datasets", status_code=201)
def create_dataset(request: Request, who: Caller, project: str, spec: DatasetCreate) -> dict[str, Any]:
    ref = _project(request, who, project, "editor")
    return datasets.create_dataset(_store(request), ref, spec.name)


@router.get("/projects/{project}/datasets/{dataset}")
def get_dataset(request: Request, who: Caller, project: str, dataset: str,
                as_of: AsOf = None) -> dict[str, Any]:
    ds = _dataset(request, who, project, dataset, as_of)
    count, rev = datasets.slice_count(_store(request), ds, None, as_of)
    return {"id": ds.id, "name": ds.name, "files": count, "revision": rev}


@router.get("/projects/{project}/datasets/{dataset}/ids")
def slice_ids(request: Request, who: Caller, project: str, dataset: str,
              query: QueryText = None, as_of: AsOf = None) -> Response:
    """The slice's file ids as little-endian int64, with its count and revision in headers."""
    ds = _dataset(request, who, project, dataset, as_of)
    ids, rev = datasets.slice_ids(_store(request), ds, query, as_of)
    return Response(
        ids.astype("<i8").tobytes(),
        media_type="application/octet-stream",
        headers={"X-Count": str(len(ids)), "X-Revision": str(rev)},
    )


@router.get("/projects/{project}/datasets/{dataset}/count")
def slice_count(request: Request, who: Caller, project: str, dataset: str,
                query: QueryText = None, as_of: AsOf = None) -> dict[str, int]:
    ds = _dataset(request, who, project, dataset, as_of)
    count, rev = datasets.slice_count(_store(request), ds, query, as_of)
    return {"count": count, "revision": rev}


@router.get("/projects/{project}/datasets/{dataset}/items")
def stream_items(request: Request, who: Caller, project: str, dataset: str,
                 query: QueryText = None, as_of: AsOf = None, after: int | None = None,
                 limit: Annotated[int | None, Query(ge=1)] = None) -> StreamingResponse:
    """NDJSON, one item a line, in file-id order; resumable with ``after`` (keyset, no OFFSET)."""
    store = _store(request)
    ds = _dataset(request, who, project, dataset, as_of)
    first, rev = items.page_items(store, ds, query=query, as_of=as_of, after=after,
                                  limit=min(PAGE, limit or PAGE))

    def lines() -> Iterator[bytes]:
        page, sent = first, 0
        while page:
            for item in page:
                yield orjson.dumps(item) + b"\n"
            sent += len(page)
            if len(page) < PAGE or (limit is not None and sent >= limit):
                return
            want = PAGE if limit is None else min(PAGE, limit - sent)
            page, _ = items.page_items(store, ds, query=query, as_of=rev,
                                       after=page[-1]["id"], limit=want)

    return StreamingResponse(lines(), media_type="application/x-ndjson",
                             headers={"X-Revision": str(rev)})


@router.post("/projects/{project}/items:batch")
def items_batch(request: Request, who: Caller, project: str, body: ItemsBatchRequest) -> Response:
    """Many items in one round trip; with ``blobs=inline`` their bytes come framed alongside."""
    store = _store(request)
    ref = _project(request, who, project)
    found, rev = items.read_items(store, ref, body.ids, body.as_of)
    if body.blobs != "inline":
        if body.blobs == "url":
            for item in found:
                sha = item["file"]["sha256"]
                item["file"]["blob_url"] = f"/api/v2/projects/{project}/blobs/{sha}" if sha else None
        return Response(orjson.dumps({"items": found, "revision": rev}),
                        media_type="application/json", headers={"X-Revision": str(rev)})

    def framed() -> Iterator[bytes]:
        # Chunks of about FRAME_CHUNK bytes: each chunk costs the event loop one thread hop.
        fetched = get_many(store.blobs, [i["file"]["sha256"] for i in found if i["file"]["sha256"]])
        parts: list[bytes] = []
        size = 0
        for item in found:
            sha = item["file"]["sha256"]
            data = next(fetched) if sha else None
            header = frames.encode_header(item, None if data is None else len(data))
            parts.append(header)
            size += len(header)
            if data is not None:
                parts.append(data)
                size += len(data)
            if size >= FRAME_CHUNK:
                yield b"".join(parts)
                parts, size = [], 0
        if parts:
            yield b"".join(parts)

    return StreamingResponse(framed(), media_type=frames.MEDIA_TYPE, headers={"X-Revision": str(rev)})


@router.get("/projects/{project}/blobs/{sha256}")
def get_blob(request: Request, who: Caller, project: str, sha256: str) -> Response:
    """Blob bytes: immutable, ETag = sha256, Range supported (sendfile for local blobs).

    Where the blob store can presign (S3), answer 307 to a short-lived URL instead, so the
    bytes go from object storage to the client without passing through this process.
    """
    store = _store(request)
    info = items.blob_info(store, _project(request, who, project), sha256)
    headers = {"ETag": f'"{sha256}"', "Cache-Control": "private, max-age=31536000, immutable"}
    if request.headers.get("if-none-match", "").strip('"') == sha256:
        return Response(status_code=304, headers=headers)
    presign = getattr(store.blobs, "presigned_url", None)
    url = presign(sha256, content_type=info["content_type"]) if presign is not None else None
    if url is not None:
        return RedirectResponse(url, status_code=307, headers={"ETag": headers["ETag"],
                                                               "Cache-Control": "private, no-store"})
    path = store.blobs.local_path(sha256)
    if path is not None:
        return FileResponse(path, media_type=info["content_type"], headers=headers)
    return Response(store.blobs.get(sha256), media_type=info["content_type"], headers=headers)


# --- writes ----------------------------------------------------------------------------

def _json_form(value: str | None, field: str) -> Any:
    if not value:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"{field}: not valid JSON ({exc})", {"field": field}) from exc


@router.post("/projects/{project}/datasets/{dataset}/files", status_code=201)
def upload_file(request: Request, who: Caller, project: str, dataset: str,
                file: Annotated[UploadFile, File()],
                instances: Annotated[str | None, Form()] = None,
                metadata: Annotated[str | None, Form()] = None) -> dict[str, Any]:
    """Multipart upload of one file, with its instances (JSON list) and metadata (JSON)."""
    ref = _project(request, who, project, "editor")
    data = file.file.read()
    return ingest.add_file(
        _store(request), ref, dataset, file.filename or "upload", data,
        _json_form(instances, "instances") or [], _json_form(metadata, "metadata") or {},
    )


@router.delete("/projects/{project}/datasets/{dataset}/files/{file_id}")
def remove_file(request: Request, who: Caller, project: str, dataset: str, file_id: int) -> dict[str, Any]:
    ref = _project(request, who, project, "editor")
    ds = datasets.get_dataset(_store(request), ref, dataset)
    return ingest.remove_file(_store(request), ref, ds.id, file_id)


@router.post("/projects/{project}/files/{file_id}/instances")
def add_instances(request: Request, who: Caller, project: str, file_id: int,
                  body: InstancesWrite) -> dict[str, Any]:
    ref = _project(request, who, project, "editor")
    return ingest.write_instances(_store(request), ref, file_id, body.instances, replace=False)


@router.put("/projects/{project}/files/{file_id}/instances")
def replace_instances(request: Request, who: Caller, project: str, file_id: int,
                      body: InstancesWrite) -> dict[str, Any]:
    ref = _project(request, who, project, "editor")
    return ingest.write_instances(_store(request), ref, file_id, body.instances, replace=True)


@router.delete("/projects/{project}/instances/{instance_id}")
def delete_instance(request: Request, who: Caller, project: str, instance_id: int) -> dict[str, Any]:
    ref = _project(request, who, project, "editor")
    return ingest.delete_instance(_store(request), ref, instance_id)


@router.put("/projects/{project}/blobs", status_code=201)
async def put_blob(request: Request, who: Caller, project: str) -> dict[str, Any]:
    """Stage an image for this project, for an import that names it by sha256 (idempotent)."""
    data = await request.body()
    store = _store(request)
    ref = await anyio.to_thread.run_sync(_project, request, who, project, "editor")
    staged = await anyio.to_thread.run_sync(staging.stage_blobs, store, ref, [(data, "body")])
    return {"sha256": staged[0].sha256, "size": len(data)}


IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]
Duplicates = Annotated[str, Query(pattern="^(skip|keep)$")]


@router.post("/projects/{project}/datasets/{dataset}/import")
def bulk_import(request: Request, who: Caller, project: str, dataset: str,
                key: IdempotencyKey = None, duplicates: Duplicates = "skip",
                format: str = "coco", shapes: str = "auto", body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    """A COCO file whose images carry the ``sha256`` of staged blobs: one commit or nothing."""
    if format != "coco":
        raise BadRequest(f"unsupported import format '{format}'", {"format": format})
    from annostream.formats.coco import read_coco

    ref = _project(request, who, project, "editor")
    return imports.commit_records(_store(request), ref, dataset, read_coco(body, None, shapes),
                                  message=f"import coco into {dataset}", key=key, duplicates=duplicates)


# --- static export and import of formats (issue 5) ---------------------------------------

@router.get("/projects/{project}/datasets/{dataset}/export")
def export_dataset(request: Request, who: Caller, project: str, dataset: str,
                   format: str = "json", query: QueryText = None, as_of: AsOf = None,
                   images: bool = True) -> StreamingResponse:
    """The slice in a static format, streamed as a zip made on the fly (constant memory).

    Everything that can fail (format, query, revision) is checked before the first byte;
    the revision is pinned, and sent in ``X-Revision`` with the file count in ``X-Count``.
    """
    from annostream.service import export

    store = _store(request)
    ds = _dataset(request, who, project, dataset, as_of)
    prepared = export.prepare(store, ds, format, query, as_of, images)
    ctx, count = prepared
    body = export.stream_zip(lambda sink: export.export_slice(
        store, ds, format, sink, query=query, as_of=ctx.revision, images=images, prepared=prepared))
    name = f"{project}-{dataset}-r{ctx.revision}-{format}.zip".replace("/", "_").replace('"', "")
    return StreamingResponse(body, media_type="application/zip", headers={
        "X-Revision": str(ctx.revision), "X-Count": str(count),
        "Content-Disposition": f'attachment; filename="{name}"'})


@router.post("/projects/{project}/datasets/{dataset}/import:records")
async def import_records(request: Request, who: Caller, project: str, dataset: str,
                         key: IdempotencyKey = None, duplicates: Duplicates = "skip",
                         format: str = "records") -> dict[str, Any]:
    """NDJSON import: a header line (labels, attribute_groups, total), then one record a line
    naming its image by the sha256 of a blob staged for this project. One commit, or nothing.

    The body is spooled to a temporary file, then read a line at a time.
    """
    import tempfile

    store = _store(request)
    ref = await anyio.to_thread.run_sync(_project, request, who, project, "editor")
    spool = tempfile.TemporaryFile()
    async for chunk in request.stream():
        spool.write(chunk)

    def run() -> dict[str, Any]:
        with spool:
            spool.seek(0)
            return imports.commit_records(store, ref, dataset, imports.ndjson_source(spool),
                                          message=f"import {format} into {dataset}", key=key,
                                          duplicates=duplicates)

    return await anyio.to_thread.run_sync(run)

# --- revisions: tags and the change feed ------------------------------------------------

@router.get("/projects/{project}/tags")
def list_tags(request: Request, who: Caller, project: str) -> list[dict[str, Any]]:
    return revisions.list_tags(_store(request), _project(request, who, project))


@router.post("/projects/{project}/tags", status_code=201)
def create_tag(request: Request, who: Caller, project: str, spec: TagCreate) -> dict[str, Any]:
    ref = _project(request, who, project, "editor")
    return revisions.create_tag(_store(request), ref, spec.name, spec.rev)


@router.get("/projects/{project}/tags/{name}")
def get_tag(request: Request, who: Caller, project: str, name: str) -> dict[str, Any]:
    return revisions.get_tag(_store(request), _project(request, who, project), name)


@router.delete("/projects/{project}/tags/{name}")
def delete_tag(request: Request, who: Caller, project: str, name: str) -> dict[str, Any]:
    return revisions.delete_tag(_store(request), _project(request, who, project, "admin"), name)


@router.get("/projects/{project}/changes")
async def change_feed(request: Request, who: Caller, project: str,
                      since: Annotated[int, Query(ge=0)] = 0,
                      wait: Annotated[float, Query(ge=0, le=60)] = 0.0,
                      dataset: str | None = None, query: QueryText = None,
                      limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> dict[str, Any]:
    """Events of the commits after ``since`` (whole commits, in order); long-polls up to
    ``wait`` seconds while there are none. The reply's ``cursor`` is the next ``since``."""
    ref = await anyio.to_thread.run_sync(_project, request, who, project)
    return await changes.wait_for_changes_async(_store(request), ref, since, wait,
                                                dataset=dataset, query=query, limit=limit)
