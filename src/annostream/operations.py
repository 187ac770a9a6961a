"""Every operation of the native API, declared once: the table ``OPERATIONS``.

A declaration says what an operation is on the wire (method, path under ``/api/v2``, query
parameters with their types and bounds, the kind of body and of reply), who may call it
(``role`` on the project named in the path; ``None`` for server-level operations, which the
service decides itself), and which size cap its body falls under (``family``).

From this table the server mounts its routes (server/api_v2.py), the HTTP transport makes
its calls (client/transports/http.py), and the service looks up the function that does the
work (service/dispatch.py), which the embedded transport calls in-process. Invariant: this
module imports neither the service layer nor SQLAlchemy, because the HTTP client imports it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from annostream.errors import InvalidInput
from annostream.schema import (
    AttributeGroupCreate,
    BlobMode,
    DatasetCreate,
    Id64,
    InstancesWrite,
    ItemsBatchRequest,
    KeyCreate,
    LabelCreate,
    ProjectCreate,
    Rev,
    Role,
    TagCreate,
    validate,
)

API_PREFIX = "/api/v2"
EXPORT_MANIFEST = "annostream-manifest.json"  # the file every export holds, read back by clients

# What a request carries: nothing, a JSON model (``BaseModel`` subclass), any JSON value,
# raw bytes, a multipart upload (one file plus JSON form fields), or NDJSON lines.
BodyKind = Literal["none", "json", "any_json", "raw", "multipart", "ndjson"]
# What a reply is: JSON, a slice's ids (int64 bytes + X-Revision), items (JSON or framed
# with their blobs), blob bytes, a derived picture (a cached JPEG), or a zip stream.
ReplyKind = Literal["json", "ids", "items", "blob", "image", "zip"]
# Which body size cap applies (server/limits.py).
Family = Literal["json", "upload", "import"]

# Ids are int64 and revisions int32, as the database stores them (schema.Id64, schema.Rev):
# 2**63, a revision of 2**31, or -1 is a 422 naming the parameter, never a driver's 500.
AsOf = (Rev | None, None)
FileId = (Id64, ...)
QueryText = (str | None, Field(default=None, max_length=10_000))
Duplicates = (Literal["skip", "keep"], "skip")
Shapes = (Literal["auto", "box", "polygon"], "auto")
IdempotencyKey = (str | None, Field(default=None, pattern=r"^[\x21-\x7e]{1,200}$"))
_PATH_PARAM = re.compile(r"{(\w+)}")


def _digits_to_int(value: Any) -> Any:
    return int(value) if isinstance(value, str) and value.isdigit() and len(value) < 6 else value


# A video frame served as a picture: frame numbers are int32; a size is one of a few, so no
# caller chooses how big a picture is made, nor how many cached copies a frame may have.
FrameSize = Annotated[Literal[256, 512, 1024], BeforeValidator(_digits_to_int)]


@dataclass(frozen=True)
class Op:
    """One operation. ``params`` maps query parameter names to ``(type, default-or-Field)``;
    path parameters are strings unless ``params`` names them with another type."""

    name: str
    method: str
    path: str
    role: Role | None
    params: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    body: BodyKind = "none"
    model: type[BaseModel] | None = None
    reply: ReplyKind = "json"
    status: int = 200
    family: Family = "json"
    # Parameters carried as HTTP headers: parameter name -> header name.
    headers: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    # A long poll (its ``wait`` > 0 holds the request open): capped per caller and per
    # server process on the server.
    long_poll: bool = False
    # The form fields of a ``multipart`` body that hold JSON (the one file part aside).
    form_fields: tuple[str, ...] = ("instances", "metadata")
    # A server-level operation only a server admin key may call: decided by the policy before
    # the body is read, like a role.
    superuser: bool = False
    # Whether making the request twice does what once does (client retries depend on it);
    # None: as its method says (GET and HEAD are).
    idempotent: bool | None = None

    @property
    def repeatable(self) -> bool:
        return self.idempotent if self.idempotent is not None else self.method in ("GET", "HEAD")

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(_PATH_PARAM.findall(self.path))

    @property
    def query_params(self) -> tuple[str, ...]:
        return tuple(k for k in self.params if k not in self.path_params and k not in self.headers)

    @cached_property
    def args_model(self) -> type[BaseModel]:
        """Path and query parameters as one pydantic model (so both transports validate alike)."""
        fields: dict[str, Any] = dict.fromkeys(self.path_params, (str, ...))
        fields.update(self.params)
        return create_model(f"{self.name}_args", __config__=ConfigDict(extra="forbid"), **fields)

    def bind(self, args: dict[str, Any]) -> dict[str, Any]:
        """Validated path and query arguments (422 naming the field), without ``body``. No
        text argument holds NUL: each is stored or looked up, and PostgreSQL refuses it."""
        given = {k: v for k, v in args.items() if k != "body"}
        bound = dict(validate(self.args_model, given))
        for name, value in bound.items():
            if isinstance(value, str) and "\x00" in value:
                raise InvalidInput(f"{name}: must not contain NUL", {"field": name})
        return bound

    def bind_body(self, body: Any) -> Any:
        """The body as the service takes it: a model instance for ``json`` bodies."""
        if self.body == "json" and self.model is not None:
            return validate(self.model, body)
        return body


def _op(name: str, method: str, path: str, role: Role | None, **kw: Any) -> Op:
    return Op(name, method, path, role, **kw)


_P = "/projects/{project}"
_D = _P + "/datasets/{dataset}"

OPERATIONS: dict[str, Op] = {
    op.name: op
    for op in (
        # projects, keys, vocabulary
        _op("list_projects", "GET", "/projects", None),
        _op(
            "create_project",
            "POST",
            "/projects",
            None,
            body="json",
            model=ProjectCreate,
            status=201,
            superuser=True,
        ),
        _op("get_project", "GET", _P, "viewer"),
        _op("create_key", "POST", _P + "/keys", "admin", body="json", model=KeyCreate, status=201),
        _op(
            "list_keys",
            "GET",
            _P + "/keys",
            "admin",
            summary="The project's keys: id, role, creation, last use, revocation; never secrets.",
        ),
        _op(
            "revoke_key",
            "DELETE",
            _P + "/keys/{client_id}",
            "admin",
            summary="Revoke a key of the project: it gets 401 from the next request on.",
        ),
        _op("list_labels", "GET", _P + "/labels", "viewer", params={"as_of": AsOf}),
        _op("create_label", "POST", _P + "/labels", "editor", body="json", model=LabelCreate, status=201),
        _op("list_attribute_groups", "GET", _P + "/attribute_groups", "viewer", params={"as_of": AsOf}),
        _op(
            "create_attribute_group",
            "POST",
            _P + "/attribute_groups",
            "editor",
            body="json",
            model=AttributeGroupCreate,
            status=201,
        ),
        # datasets and reads
        _op("list_datasets", "GET", _P + "/datasets", "viewer", params={"as_of": AsOf}),
        _op(
            "create_dataset", "POST", _P + "/datasets", "editor", body="json", model=DatasetCreate, status=201
        ),
        _op("get_dataset", "GET", _D, "viewer", params={"as_of": AsOf}),
        _op(
            "label_counts",
            "GET",
            _D + "/labels",
            "viewer",
            params={"query": QueryText, "as_of": AsOf},
            summary="Per label: files holding it and its instances, in a slice at a revision.",
        ),
        _op(
            "slice_ids", "GET", _D + "/ids", "viewer", params={"query": QueryText, "as_of": AsOf}, reply="ids"
        ),
        _op("slice_count", "GET", _D + "/count", "viewer", params={"query": QueryText, "as_of": AsOf}),
        _op(
            "slice_page",
            "GET",
            _D + "/page",
            "viewer",
            reply="items",
            params={
                "query": QueryText,
                "as_of": AsOf,
                "after": (Id64 | None, None),
                "limit": (int, Field(default=64, ge=1, le=1000)),
                "blobs": (BlobMode, "none"),
            },
            summary="One keyset page of a slice (file id > after, in id order) with its revision.",
        ),
        _op(
            "frame_ids",
            "GET",
            _D + "/frames",
            "viewer",
            params={
                "query": QueryText,
                "frame_query": QueryText,
                "as_of": AsOf,
                "step": (int, Field(default=1, ge=1, le=1_000_000)),
            },
            reply="ids",
            summary="(file id, frame number) pairs, flattened, of the slice's video frames "
            "the frame query selects.",
        ),
        _op(
            "items_batch",
            "POST",
            _P + "/items:batch",
            "viewer",
            body="json",
            model=ItemsBatchRequest,
            reply="items",
            idempotent=True,
        ),
        _op("get_blob", "GET", _P + "/blobs/{sha256}", "viewer", reply="blob"),
        _op(
            "get_frame",
            "GET",
            _P + "/blobs/{sha256}/frame",
            "viewer",
            params={"number": (Rev, 0), "size": (FrameSize, 512)},
            reply="image",
            summary="Frame `number` (0..frame_count-1) of a video blob of the project as a JPEG "
            "at most `size` pixels a side; made once per (blob, frame, size), immutable.",
        ),
        # writes
        _op("upload_file", "POST", _D + "/files", "editor", body="multipart", status=201, family="upload"),
        _op("remove_file", "DELETE", _D + "/files/{file_id}", "editor", params={"file_id": FileId}),
        _op(
            "add_instances",
            "POST",
            _P + "/files/{file_id}/instances",
            "editor",
            params={"file_id": FileId},
            body="json",
            model=InstancesWrite,
        ),
        _op(
            "replace_instances",
            "PUT",
            _P + "/files/{file_id}/instances",
            "editor",
            params={"file_id": FileId},
            body="json",
            model=InstancesWrite,
        ),
        _op(
            "delete_instance",
            "DELETE",
            _P + "/instances/{instance_id}",
            "editor",
            params={"instance_id": FileId},
        ),
        _op(
            "stage_blob",
            "PUT",
            _P + "/blobs",
            "editor",
            body="raw",
            status=201,
            family="upload",
            idempotent=True,
        ),  # keyed by the sha256 of the bytes
        # imports carry an idempotency key (the SDK always sends one): a repeat replays the first reply
        _op(
            "import_coco",
            "POST",
            _D + "/import",
            "editor",
            params={
                "format": (str, "coco"),
                "shapes": Shapes,
                "duplicates": Duplicates,
                "key": IdempotencyKey,
            },
            headers={"key": "Idempotency-Key"},
            body="any_json",
            family="import",
            idempotent=True,
        ),
        _op(
            "import_records",
            "POST",
            _D + "/import:records",
            "editor",
            params={"format": (str, "records"), "duplicates": Duplicates, "key": IdempotencyKey},
            headers={"key": "Idempotency-Key"},
            body="ndjson",
            family="import",
            idempotent=True,
        ),
        _op(
            "export",
            "GET",
            _D + "/export",
            "viewer",
            params={"format": (str, "json"), "query": QueryText, "as_of": AsOf, "images": (bool, True)},
            reply="zip",
        ),
        # revisions: tags and the change feed
        _op("list_tags", "GET", _P + "/tags", "viewer"),
        _op("create_tag", "POST", _P + "/tags", "editor", body="json", model=TagCreate, status=201),
        _op("get_tag", "GET", _P + "/tags/{name}", "viewer"),
        _op("delete_tag", "DELETE", _P + "/tags/{name}", "admin"),
        _op(
            "changes",
            "GET",
            _P + "/changes",
            "viewer",
            params={
                "since": (Rev, 0),
                "wait": (float, Field(default=0.0, ge=0, le=60)),
                "dataset": (str | None, None),
                "query": QueryText,
                "limit": (int, Field(default=1000, ge=1, le=10_000)),
            },
            long_poll=True,
        ),
    )
}
