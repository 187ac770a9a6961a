"""The routes and JSON shapes that Diffgram's own SDK (``diffgram==0.15.0``) calls, translated
to the service layer (docs/diffgram.md). Nothing else in annostream knows about them.

Mapping: a Diffgram *directory* is one of our datasets (``directory_id`` = dataset id), a
``label_file`` id is our stable label id, a file id is our file id, and a slice query is our
query language. Image URLs point at our blob route with a signed, expiring token
(server/signing.py), because the SDK downloads images with no credentials.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

import orjson
from fastapi import (
    APIRouter,
    Body,
    Depends,
    FastAPI,
    File,
    Form,
    Path,
    Query,
    Request,
    UploadFile,
)
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from annostream.errors import BadRequest, Forbidden, InvalidInput
from annostream.schema import ERROR_RESPONSES, INT64_MAX, Id64, Instance, Item, Role
from annostream.server import signing
from annostream.server.app import public_base_url
from annostream.server.auth import principal
from annostream.server.replies import BLOB_RESPONSES, blob_response
from annostream.service import datasets, ingest, items, labels, projects
from annostream.service.datasets import DatasetRef
from annostream.service.projects import ANONYMOUS, LOCAL, Principal, ProjectRef
from annostream.store import Store

router = APIRouter(tags=["diffgram"], responses=ERROR_RESPONSES)

_ANONYMOUS_BASIC = "None:None"
_OK_LOG: dict[str, Any] = {"success": True, "error": {}, "info": {}}
DEFAULT_SCHEMA_ID = 1

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


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


def install(app: FastAPI) -> None:
    """Add the legacy routes and the slash collapsing to ``app``."""
    app.add_middleware(CollapseSlashes)
    app.include_router(router)


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


Caller = Annotated[Principal, Depends(legacy_principal)]


def _store(request: Request) -> Store:
    return request.app.state.store


def _project(request: Request, who: Principal, project: str, need: Role = "viewer") -> ProjectRef:
    return projects.authorize(_store(request), who, project, need)


def _directory(request: Request, ref: ProjectRef, directory_id: int | None) -> DatasetRef:
    if directory_id is None:
        return datasets.default_dataset(_store(request), ref)
    return datasets.get_dataset_by_id(_store(request), ref, _int64(directory_id, "directory_id"))


def _int64(value: Any, field: str) -> int:
    """An id from a loosely typed packet: a non-negative int64, else 400 naming the field."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, str))
        or not str(value).isdigit()
        or int(value) > INT64_MAX
    ):
        raise BadRequest(f"{field}: must be an integer id in [0, 2**63)", {"field": field})
    return int(value)


def _directory_json(ds: DatasetRef) -> dict[str, Any]:
    """A ``WorkingDir`` as Diffgram serialises it; every key becomes an SDK attribute, so no
    key may shadow one of the SDK's own (``project``, ``file_id_list``, ``get`` ...)."""
    return {
        "id": ds.id,
        "directory_id": ds.id,
        "nickname": ds.name,
        "jobs_to_sync": {"job_ids": []},
        "has_changes": None,
        "created_time": None,
    }


# --- rendering our items as Diffgram files ------------------------------------------------


def _signed_url(request: Request, project: str, sha256: str) -> str:
    expires, sig = signing.sign(request.app.state.signing_secret, project, sha256)
    return (
        f"{public_base_url(request)}/api/v2/projects/{project}/blobs/{sha256}/signed"
        f"?expires={expires}&sig={sig}"
    )


def _xy(points: list[list[float]]) -> list[dict[str, float]]:
    return [{"x": p[0], "y": p[1]} for p in points]


def _instance_json(inst: Instance) -> dict[str, Any]:
    """One of our instances in Diffgram's shape: ``label_file`` and flat box coordinates."""
    out: dict[str, Any] = {
        "id": inst["id"],
        "type": inst["type"],
        "number": inst["track_id"],
        "frame_number": inst["frame_number"],
        "machine_made": inst["machine_made"],
        "attribute_groups": inst["attributes"],
    }
    if inst["type"] != "global":
        out["label_file_id"] = inst["label_id"]
        out["label_file"] = {"id": inst["label_id"], "label": {"name": inst["label"]}}
    if inst["bbox"] is not None:
        out.update(zip(("x_min", "y_min", "x_max", "y_max"), inst["bbox"], strict=True))
    geom = inst["geometry"] or {}
    if inst["type"] in ("polygon", "line"):
        out["points"] = _xy(geom["points"])
    elif inst["type"] == "point":
        out["points"] = [{"x": geom["x"], "y": geom["y"]}]
    elif inst["type"] == "keypoints":
        out["nodes"] = [
            {"x": p[0], "y": p[1], "visibility": p[2] if len(p) > 2 else 2} for p in geom["points"]
        ]
    return out


def _file_json(request: Request, project: str, item: Item, with_instances: bool) -> dict[str, Any]:
    """An item as Diffgram's ``file_serialized``; images get a signed, expiring URL."""
    f = item["file"]
    image = None
    if f["type"] in ("image", "frame") and f["sha256"]:
        image = {
            "url_signed": _signed_url(request, project, f["sha256"]),
            "width": f["width"],
            "height": f["height"],
            "original_filename": f["name"],
            "content_type": f["content_type"],
        }
    video = None
    if f["type"] == "video" and f["sha256"]:
        video = {
            "url_signed": _signed_url(request, project, f["sha256"]),
            "width": f["width"],
            "height": f["height"],
            "frame_count": f["frame_count"],
            "fps": f["fps"],
            "original_filename": f["name"],
            "content_type": f["content_type"],
        }
    out: dict[str, Any] = {
        "id": f["id"],
        "type": f["type"],
        "original_filename": f["name"],
        "state": "added",
        "image": image,
        "video": video,
        "text": f["text"],
        "frame_number": f["frame_number"],
        "parent_id": f["parent_id"],
    }
    if with_instances:
        out["instance_list"] = [_instance_json(i) for i in item["instances"]]
    return out


# --- Project() start-up, directories, listings --------------------------------------------


@router.get("/api/project/{project}/user/{username}/working_dir/view")
def working_dir_view(
    request: Request, who: Caller, project: str, username: str, name: str | None = None
) -> dict[str, Any]:
    """One directory by name, or the default one (``username`` is always "legacy")."""
    ref = _project(request, who, project)
    store = _store(request)
    ds = datasets.get_dataset(store, ref, name) if name else datasets.default_dataset(store, ref)
    return {"success": True, "working_dir": _directory_json(ds)}


@router.post("/api/v1/project/{project}/directory/list")
def directory_list(request: Request, who: Caller, project: str) -> dict[str, Any]:
    ref = _project(request, who, project)
    store = _store(request)
    listed = [DatasetRef(d["id"], d["name"], ref) for d in datasets.list_datasets(store, ref)]
    default = datasets.default_dataset(store, ref) if listed else None
    return {
        "success": True,
        "default_directory": _directory_json(default) if default else None,
        "directory_list": [_directory_json(d) for d in listed],
    }


class _ListMetadata(BaseModel):
    model_config = ConfigDict(extra="ignore")

    directory_id: Id64 | None = None
    page: Annotated[int, Field(ge=0, le=1_000_000_000)] = 1
    limit: Annotated[int, Field(ge=0, le=10_000)] = 100
    file_view_mode: str = "annotation"
    query: str | None = None


class _ListRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    metadata: _ListMetadata


@router.post("/api/project/{project}/user/{username}/file/list")
def file_list(
    request: Request, who: Caller, project: str, username: str, body: _ListRequest
) -> dict[str, Any]:
    """A directory's (or slice's) files in file-id order.

    ``ids_only`` answers every id in page 1: the SDK sends the slice query only with page 1,
    so a second page would come back unfiltered. Other modes page with ``limit``.
    """
    meta = body.metadata
    ref = _project(request, who, project)
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
    return {
        "file_list": [_file_json(request, project, it, meta.file_view_mode == "annotation") for it in found],
        "metadata": {
            "page": meta.page,
            "next_page": meta.page + 1 if meta.page < total_pages else None,
            "total_pages": total_pages,
            "file_count": len(ids),
        },
    }


@router.post("/api/v1/project/{project}/file/exists")
def file_exists(
    request: Request,
    who: Caller,
    project: str,
    file_id_list: Annotated[list[Id64], Body(embed=True, max_length=10_000)],
) -> dict[str, Any]:
    ref = _project(request, who, project)
    missing = items.missing_files(_store(request), ref, file_id_list)
    return {"result": {"exists": not missing, "missing_files": missing}}


# --- labels and attributes ----------------------------------------------------------------


@router.get("/api/v1/project/{project}/labels/view/name_to_file_id")
def name_to_file_id(
    request: Request, who: Caller, project: str, schema_id: Annotated[Id64 | None, Query()] = None
) -> dict[str, Any]:
    """Label name -> label_file id, which is our stable label id."""
    ref = _project(request, who, project)
    mapping = {lab["name"]: lab["id"] for lab in labels.list_labels(_store(request), ref)}
    return {"log": _OK_LOG, "name_to_file_id": mapping}


@router.get("/api/v1/project/{project}/labels-schema")
def label_schemas(request: Request, who: Caller, project: str) -> list[dict[str, Any]]:
    """One schema per project: we have a single vocabulary, so it is always the default."""
    ref = _project(request, who, project)
    return [
        {
            "id": DEFAULT_SCHEMA_ID,
            "name": "Default Schema",
            "is_default": True,
            "project_id": ref.id,
            "archived": False,
        }
    ]


@router.get("/api/project/{project}/labels")
def label_list(
    request: Request, who: Caller, project: str, schema_id: Annotated[Id64 | None, Query()] = None
) -> dict[str, Any]:
    ref = _project(request, who, project)
    return {
        "labels_out": [
            {"id": lab["id"], "colour": lab["color"], "label": {"name": lab["name"]}}
            for lab in labels.list_labels(_store(request), ref)
        ]
    }


@router.post("/api/v1/project/{project}/attribute/template/list")
def attribute_list(request: Request, who: Caller, project: str) -> dict[str, Any]:
    ref = _project(request, who, project)
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


# --- files: one with its instances, by id, and uploads ------------------------------------


@router.post("/api/project/{project}/file/{file_id}/annotation/list")
def annotation_list(
    request: Request, who: Caller, project: str, file_id: Annotated[Id64, Path()]
) -> dict[str, Any]:
    """One file with its instances (what every ``directory[i]`` asks for)."""
    ref = _project(request, who, project)
    found, _ = items.read_items(_store(request), ref, [file_id])
    return {"success": True, "file_serialized": _file_json(request, project, found[0], True)}


@router.post("/api/v1/file/view")
def file_view(
    request: Request, who: Caller, file_id: Annotated[Id64, Body()], project_string_id: Annotated[str, Body()]
) -> dict[str, Any]:
    ref = _project(request, who, project_string_id)
    found, _ = items.read_items(_store(request), ref, [file_id])
    return {"log": _OK_LOG, "file": _file_json(request, project_string_id, found[0], False)}


def _instance_in(raw: Any, at: str, label_names: dict[int, str]) -> dict[str, Any]:
    """A Diffgram instance as one of ours (the service validates the result)."""
    if not isinstance(raw, dict):
        raise BadRequest(
            f"{at} is {raw!r}: the diffgram SDK sends null for an instance that already has a "
            "label_file_id; give 'name' instead, or pass convert_names_to_label_files=False",
            {"field": at},
        )
    kind = raw.get("type")
    label = raw.get("name")
    if raw.get("label_file_id") is not None:
        label = label_names.get(_int64(raw["label_file_id"], f"{at}.label_file_id"))
        if label is None:
            raise BadRequest(f"{at}.label_file_id: unknown label {raw['label_file_id']}", {"field": at})
    points = raw.get("points") or []
    if kind == "box":
        geometry = {k: raw.get(k) for k in ("x_min", "y_min", "x_max", "y_max")}
    elif kind in ("polygon", "line"):
        geometry = {"points": [[p["x"], p["y"]] for p in points]}
    elif kind == "point":
        first = points[0] if points else raw
        geometry = {"x": first.get("x"), "y": first.get("y")}
    elif kind in ("tag", "global"):
        geometry = {}
    else:
        raise BadRequest(
            f"{at}.type: '{kind}' cannot be uploaded through the diffgram routes "
            "(box, polygon, line, point, tag and global can)",
            {"field": f"{at}.type"},
        )
    out: dict[str, Any] = {
        "type": kind,
        "label": label,
        "geometry": geometry,
        "attributes": raw.get("attribute_groups") or {},
        "machine_made": bool(raw.get("machine_made", False)),
    }
    if raw.get("frame_number") is not None:
        out["frame_number"] = raw["frame_number"]
    return out


def _frame_packets(frame_map: Any, label_names: dict[int, str]) -> list[dict[str, Any]]:
    """A video's ``frame_packet_map`` ({frame number: [instances]}) as instances on frames;
    an instance's ``number`` is its track."""
    if frame_map is None:
        return []
    if not isinstance(frame_map, dict):
        raise BadRequest(
            "frame_packet_map: expected an object of frame number -> instance list",
            {"field": "frame_packet_map"},
        )
    out = []
    for key, raws in frame_map.items():
        at = f"frame_packet_map[{key}]"
        if not str(key).isdigit() or not isinstance(raws, list):
            raise BadRequest(f"{at}: keys are frame numbers, values lists of instances", {"field": at})
        for i, raw in enumerate(raws):
            inst = _instance_in(raw, f"{at}[{i}]", label_names)
            inst["frame_number"] = int(key)
            if isinstance(raw.get("number"), int):
                inst["track_id"] = raw["number"]
            out.append(inst)
    return out


@router.post("/api/walrus/v1/project/{project}/input/from_local")
def from_local(
    request: Request,
    who: Caller,
    project: str,
    file: Annotated[UploadFile, File()],
    packet_json: Annotated[str, Form(alias="json")],
) -> dict[str, Any]:
    """``project.file.from_local(path, instance_list=...)``: one file and its instances."""
    ref = _project(request, who, project, "editor")
    try:
        packet = orjson.loads(packet_json)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"json: not valid JSON ({exc})", {"field": "json"}) from exc
    if packet.get("parent_file_id") is not None:
        raise BadRequest("compound children (parent_file_id) are not supported here")
    ds = _directory(request, ref, packet.get("directory_id"))
    names = {lab["id"]: lab["name"] for lab in labels.list_labels(_store(request), ref)}
    converted = [
        _instance_in(raw, f"instance_list[{i}]", names)
        for i, raw in enumerate(packet.get("instance_list") or [])
    ]
    converted += _frame_packets(packet.get("frame_packet_map"), names)
    try:
        added = ingest.add_file(
            _store(request), ref, ds.name, file.filename or "upload", file.file.read(), converted
        )
    except InvalidInput as exc:  # the SDK shows the text of a 400 only
        raise BadRequest(exc.message, exc.detail) from exc
    return {
        "log": _OK_LOG,
        "file": {"id": added["id"], "type": added["type"], "original_filename": added["name"]},
    }


# --- signed blobs -------------------------------------------------------------------------


@router.get(
    "/api/v2/projects/{project}/blobs/{sha256}/signed", response_class=Response, responses=BLOB_RESPONSES
)
def signed_blob(
    request: Request,
    project: str,
    sha256: str,
    expires: Annotated[int, Query(ge=0, le=INT64_MAX)],
    sig: Annotated[str, Query(max_length=128)],
) -> Response:
    """Blob bytes for whoever holds a valid, unexpired signature: the signature is the grant,
    made for a caller that was authorised to read the item."""
    if not signing.verify(request.app.state.signing_secret, project, sha256, expires, sig):
        raise Forbidden("invalid or expired signature")
    return blob_response(items.open_blob(_store(request), _project(request, LOCAL, project), sha256), request)
