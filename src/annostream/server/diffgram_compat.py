"""The routes that Diffgram's own SDK (``diffgram==0.15.0``) calls, declared once in
``DIFFGRAM_OPERATIONS`` and translated to the service layer (docs/diffgram.md).

Mapping: a Diffgram *directory* is one of our datasets (``directory_id`` = dataset id), a
``label_file`` id is our stable label id, a file id is our file id, and a slice query is our
query language. Image URLs point at our blob route with a signed, expiring token
(server/signing.py), because the SDK downloads images with no credentials.

Each declaration is an ``Op`` as the native API's are (annostream/operations.py), with the
route's full path, and every route is made the same way as /api/v2's (server/api_v2.py):
1. the policy dependency authenticates the caller (``Basic None:None`` is anonymous, as the
   SDK sends it) and grants the project in the path at the declared ``role`` before a byte of
   the body is read; ``file_view`` names its project inside its body, so it authenticates
   first, reads at most ``limits.PRE_AUTH_BYTES``, then authorizes; ``signed_blob`` has no
   role: its signature is the grant;
2. path and query parameters are validated against the declaration;
3. the body is read only by ``limits.read_body`` under its family's cap (413);
4. the handler runs in a worker thread and its reply is Diffgram's JSON shape.
Bad input is a 400 naming the field, not a 422: the SDK shows the message of a 400 only.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import math
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from functools import partial
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from annostream.errors import BadRequest, Forbidden, InvalidInput
from annostream.operations import API_PREFIX, FileId, Op
from annostream.schema import ERROR_RESPONSES, INT64_MAX, Id64, NoNul, validate
from annostream.server import signing
from annostream.server.api_v2 import documented
from annostream.server.app import FastJSONResponse, public_base_url
from annostream.server.auth import principal
from annostream.server.diffgram_shapes import directory_json, file_json, frame_packets, instance_in
from annostream.server.limits import PRE_AUTH_BYTES, read_body
from annostream.server.replies import RESPONSES_BY_REPLY, blob_response
from annostream.service import datasets, dispatch, ingest, items, labels, projects
from annostream.service.datasets import DatasetRef
from annostream.service.dispatch import Subject
from annostream.service.projects import ANONYMOUS, LOCAL, Principal, ProjectRef
from annostream.store import Store

_ANONYMOUS_BASIC = "None:None"
_OK_LOG: dict[str, Any] = {"success": True, "error": {}, "info": {}}
DEFAULT_SCHEMA_ID = 1

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


# --- what the SDK sends -------------------------------------------------------------------


class _Lenient(BaseModel):
    """SDK packets carry keys we do not use: they are ignored, the ones we use are checked."""

    model_config = ConfigDict(extra="ignore")


class _ListMetadata(_Lenient):
    directory_id: Id64 | None = None
    page: Annotated[int, Field(ge=0, le=1_000_000_000)] = 1
    limit: Annotated[int, Field(ge=0, le=10_000)] = 100
    file_view_mode: str = Field(default="annotation", max_length=100)
    query: Annotated[str, NoNul] | None = Field(default=None, max_length=10_000)


class _ListRequest(_Lenient):
    metadata: _ListMetadata


class _FileExists(_Lenient):
    file_id_list: list[Id64] = Field(max_length=10_000)


class _FileView(_Lenient):
    file_id: Id64
    project_string_id: Annotated[str, NoNul] = Field(min_length=1, max_length=100)


class _UploadPacket(_Lenient):
    """The ``json`` form field of ``from_local``."""

    directory_id: Id64 | None = None
    instance_list: list[Any] | None = Field(default=None, max_length=100_000)
    frame_packet_map: dict[str, Any] | None = None
    parent_file_id: Any = None


# --- the declarations ---------------------------------------------------------------------

_PU = "/api/project/{project}/user/{username}"
_V1 = "/api/v1/project/{project}"
SchemaId = (Id64 | None, None)

DIFFGRAM_OPERATIONS: dict[str, Op] = {
    op.name: op
    for op in (
        Op(
            "working_dir_view",
            "GET",
            _PU + "/working_dir/view",
            "viewer",
            params={"name": (str | None, Field(default=None, max_length=200))},
        ),
        Op("directory_list", "POST", _V1 + "/directory/list", "viewer"),
        Op("file_list", "POST", _PU + "/file/list", "viewer", body="json", model=_ListRequest),
        Op("file_exists", "POST", _V1 + "/file/exists", "viewer", body="json", model=_FileExists),
        Op(
            "name_to_file_id",
            "GET",
            _V1 + "/labels/view/name_to_file_id",
            "viewer",
            params={"schema_id": SchemaId},
        ),
        Op("label_schemas", "GET", _V1 + "/labels-schema", "viewer"),
        Op("label_list", "GET", "/api/project/{project}/labels", "viewer", params={"schema_id": SchemaId}),
        Op("attribute_list", "POST", _V1 + "/attribute/template/list", "viewer"),
        Op(
            "annotation_list",
            "POST",
            "/api/project/{project}/file/{file_id}/annotation/list",
            "viewer",
            params={"file_id": FileId},
        ),
        # The project is named in the body: authenticated, then read under PRE_AUTH_BYTES.
        Op("file_view", "POST", "/api/v1/file/view", "viewer", body="json", model=_FileView),
        Op(
            "from_local",
            "POST",
            "/api/walrus/v1/project/{project}/input/from_local",
            "editor",
            body="multipart",
            family="upload",
            form_fields=("json",),
        ),
        # No role: a valid, unexpired signature is the grant.
        Op(
            "signed_blob",
            "GET",
            API_PREFIX + "/projects/{project}/blobs/{sha256}/signed",
            None,
            params={
                "expires": (int, Field(ge=0, le=INT64_MAX)),
                "sig": (str, Field(max_length=128)),
            },
            reply="blob",
        ),
    )
}

Handler = Callable[..., Any]
HANDLERS: dict[str, Handler] = {}


def handles(name: str) -> Callable[[Handler], Handler]:
    """Register the handler of the declared route ``name``: ``fn(request, subject, **args)``."""

    def register(fn: Handler) -> Handler:
        if name not in DIFFGRAM_OPERATIONS:
            raise RuntimeError(f"@handles({name!r}): no such declared diffgram route")
        HANDLERS[name] = fn
        return fn

    return register


# --- policy and the route pipeline ---------------------------------------------------------


def legacy_principal(request: Request) -> Principal:
    """Like ``auth.principal``, except that ``Basic None:None`` means anonymous.

    The SDK sends that header on its non-session calls when it was built without keys,
    which is how it reaches a public project.
    """
    scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "basic":
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            if base64.b64decode(value.strip(), validate=True).decode() == _ANONYMOUS_BASIC:
                return ANONYMOUS
    return principal(request)


def _names_project_in_body(op: Op) -> bool:
    return op.role is not None and "project" not in op.path_params


def policy(op: Op) -> Callable[[Request], Subject]:
    """FastAPI dependency for ``op``: the caller (401 on bad credentials), granted ``op.role``
    on the project in the path (401/403/404); the principal itself for ``file_view`` (its
    handler authorizes once the small body is read); anonymous for ``signed_blob``."""

    def grant(request: Request) -> Subject:
        if op.role is None:
            return ANONYMOUS  # the signature is the grant: credentials are not even read
        who = legacy_principal(request)
        if _names_project_in_body(op):
            return who
        return dispatch.authorize(request.app.state.store, who, op, request.path_params)

    grant.__name__ = f"policy_{op.name}"
    return grant


def endpoint(op: Op, handler: Handler) -> Callable[..., Coroutine[Any, Any, Response]]:
    """The route of ``op``: validate, read the body (capped), run the handler off the loop."""
    cap = PRE_AUTH_BYTES if _names_project_in_body(op) else None

    async def handle(request: Request, subject: Any = Depends(policy(op))) -> Response:  # noqa: B008
        try:
            given = {k: v for k, v in request.query_params.items() if k in op.query_params}
            args = op.bind({**given, **request.path_params})
            if op.body != "none":
                args["body"] = op.bind_body(await read_body(request, op, request.app.state.limits, cap))
            result = await anyio.to_thread.run_sync(partial(handler, request, subject, **args))
        except InvalidInput as exc:  # the SDK shows the text of a 400 only
            raise BadRequest(exc.message, exc.detail) from exc
        return result if isinstance(result, Response) else FastJSONResponse(result)

    handle.__name__ = op.name
    return handle


class CollapseSlashes:
    """ASGI middleware: ``//api/...`` becomes ``/api/...``.

    The SDK joins ``host + "/api/..."`` by concatenation, so a host given with a trailing
    slash sends a doubled leading slash that no route would match.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith("//"):
            path = "/" + scope["path"].lstrip("/")
            scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)


def build_router() -> APIRouter:
    """One route per declared diffgram route, in declaration order."""
    missing = sorted(set(DIFFGRAM_OPERATIONS) - set(HANDLERS))
    if missing:
        raise RuntimeError(f"declared diffgram routes without a handler: {missing}")
    router = APIRouter(tags=["diffgram"], responses=ERROR_RESPONSES)
    for op in DIFFGRAM_OPERATIONS.values():
        router.add_api_route(
            op.path,
            endpoint(op, HANDLERS[op.name]),
            methods=[op.method],
            status_code=op.status,
            name=f"diffgram_{op.name}",
            openapi_extra=documented(op),
            responses=RESPONSES_BY_REPLY[op.reply],
        )
    return router


def install(app: FastAPI) -> None:
    """Add the legacy routes and the slash collapsing to ``app``."""
    app.add_middleware(CollapseSlashes)
    app.include_router(build_router())


# --- the handlers: translations to the service layer ---------------------------------------


def _store(request: Request) -> Store:
    return request.app.state.store


def _directory(request: Request, ref: ProjectRef, directory_id: int | None) -> DatasetRef:
    if directory_id is None:
        return datasets.default_dataset(_store(request), ref)
    return datasets.get_dataset_by_id(_store(request), ref, directory_id)


def _signer(request: Request, project: str) -> Callable[[str], str]:
    """Signed, expiring URLs of ``project``'s blobs, at the configured public URL."""

    def signed_url(sha256: str) -> str:
        expires, sig = signing.sign(request.app.state.signing_secret, project, sha256)
        return (
            f"{public_base_url(request)}{API_PREFIX}/projects/{project}/blobs/{sha256}/signed"
            f"?expires={expires}&sig={sig}"
        )

    return signed_url


@handles("working_dir_view")
def working_dir_view(
    request: Request, ref: ProjectRef, project: str, username: str, name: str | None = None
) -> dict[str, Any]:
    """One directory by name, or the default one (``username`` is always "legacy")."""
    store = _store(request)
    ds = datasets.get_dataset(store, ref, name) if name else datasets.default_dataset(store, ref)
    return {"success": True, "working_dir": directory_json(ds)}


@handles("directory_list")
def directory_list(request: Request, ref: ProjectRef, project: str) -> dict[str, Any]:
    store = _store(request)
    listed = [DatasetRef(d["id"], d["name"], ref) for d in datasets.list_datasets(store, ref)]
    default = datasets.default_dataset(store, ref) if listed else None
    return {
        "success": True,
        "default_directory": directory_json(default) if default else None,
        "directory_list": [directory_json(d) for d in listed],
    }


@handles("file_list")
def file_list(
    request: Request, ref: ProjectRef, project: str, username: str, body: _ListRequest
) -> dict[str, Any]:
    """A directory's (or slice's) files in file-id order.

    ``ids_only`` answers every id in page 1: the SDK sends the slice query only with page 1,
    so a second page would come back unfiltered. Other modes page with ``limit``.
    """
    meta = body.metadata
    ds = _directory(request, ref, meta.directory_id)
    ids, _ = datasets.slice_ids(_store(request), ds, meta.query, dialect="diffgram")
    if meta.file_view_mode == "ids_only":
        page_ids = ids.tolist() if meta.page <= 1 else []
        return {
            "file_list": page_ids,
            "metadata": {"page": meta.page, "next_page": None, "total_pages": 1, "file_count": len(ids)},
        }
    limit = max(1, meta.limit)
    total_pages = max(1, math.ceil(len(ids) / limit))
    start = (max(1, meta.page) - 1) * limit
    found, _ = items.read_items(_store(request), ref, ids[start : start + limit].tolist())
    signed = _signer(request, ref.string_id)
    return {
        "file_list": [file_json(it, meta.file_view_mode == "annotation", signed) for it in found],
        "metadata": {
            "page": meta.page,
            "next_page": meta.page + 1 if meta.page < total_pages else None,
            "total_pages": total_pages,
            "file_count": len(ids),
        },
    }


@handles("file_exists")
def file_exists(request: Request, ref: ProjectRef, project: str, body: _FileExists) -> dict[str, Any]:
    missing = items.missing_files(_store(request), ref, body.file_id_list)
    return {"result": {"exists": not missing, "missing_files": missing}}


@handles("name_to_file_id")
def name_to_file_id(
    request: Request, ref: ProjectRef, project: str, schema_id: int | None = None
) -> dict[str, Any]:
    """Label name -> label_file id, which is our stable label id."""
    mapping = {lab["name"]: lab["id"] for lab in labels.list_labels(_store(request), ref)}
    return {"log": _OK_LOG, "name_to_file_id": mapping}


@handles("label_schemas")
def label_schemas(request: Request, ref: ProjectRef, project: str) -> list[dict[str, Any]]:
    """One schema per project: we have a single vocabulary, so it is always the default."""
    return [
        {
            "id": DEFAULT_SCHEMA_ID,
            "name": "Default Schema",
            "is_default": True,
            "project_id": ref.id,
            "archived": False,
        }
    ]


@handles("label_list")
def label_list(
    request: Request, ref: ProjectRef, project: str, schema_id: int | None = None
) -> dict[str, Any]:
    return {
        "labels_out": [
            {"id": lab["id"], "colour": lab["color"], "label": {"name": lab["name"]}}
            for lab in labels.list_labels(_store(request), ref)
        ]
    }


@handles("attribute_list")
def attribute_list(request: Request, ref: ProjectRef, project: str) -> dict[str, Any]:
    groups = labels.list_attribute_groups(_store(request), ref)
    return {
        "attribute_group_list": [
            {
                "name": g["name"],
                "kind": g["kind"],
                "attribute_template_list": [{"name": option} for option in g["options"]],
            }
            for g in groups
        ]
    }


@handles("annotation_list")
def annotation_list(request: Request, ref: ProjectRef, project: str, file_id: int) -> dict[str, Any]:
    """One file with its instances (what every ``directory[i]`` asks for)."""
    found, _ = items.read_items(_store(request), ref, [file_id])
    return {"success": True, "file_serialized": file_json(found[0], True, _signer(request, ref.string_id))}


@handles("file_view")
def file_view(request: Request, who: Principal, body: _FileView) -> dict[str, Any]:
    ref = projects.authorize(_store(request), who, body.project_string_id, "viewer")
    found, _ = items.read_items(_store(request), ref, [body.file_id])
    return {"log": _OK_LOG, "file": file_json(found[0], False, _signer(request, ref.string_id))}


@handles("from_local")
def from_local(request: Request, ref: ProjectRef, project: str, body: dict[str, Any]) -> dict[str, Any]:
    """``project.file.from_local(path, instance_list=...)``: one file and its instances."""
    if "json" not in body:
        raise BadRequest("json: Field required", {"field": "json"})
    packet = validate(_UploadPacket, body["json"], "json")
    if packet.parent_file_id is not None:
        raise BadRequest("compound children (parent_file_id) are not supported here")
    ds = _directory(request, ref, packet.directory_id)
    names = {lab["id"]: lab["name"] for lab in labels.list_labels(_store(request), ref)}
    converted = [
        instance_in(raw, f"instance_list[{i}]", names) for i, raw in enumerate(packet.instance_list or [])
    ]
    converted += frame_packets(packet.frame_packet_map, names)
    added = ingest.add_file(_store(request), ref, ds.name, body["filename"], body["data"], converted)
    return {
        "log": _OK_LOG,
        "file": {"id": added["id"], "type": added["type"], "original_filename": added["name"]},
    }


@handles("signed_blob")
def signed_blob(
    request: Request, who: Principal, project: str, sha256: str, expires: int, sig: str
) -> Response:
    """Blob bytes for whoever holds a valid, unexpired signature: the signature is the grant,
    made for a caller that was authorised to read the item."""
    if not signing.verify(request.app.state.signing_secret, project, sha256, expires, sig):
        raise Forbidden("invalid or expired signature")
    ref = projects.authorize(_store(request), LOCAL, project, "viewer")
    return blob_response(items.open_blob(_store(request), ref, sha256), request)
