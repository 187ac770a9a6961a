"""Pydantic models of the wire format, shared by the server, the service and the client.

Items travel as plain dicts (built by the service, serialised with orjson) because they are
the hot path; the models here describe and validate what callers send in.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, NotRequired, TypedDict, TypeVar

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from annostream.errors import InvalidInput

Role = Literal["viewer", "editor", "admin"]
FileType = Literal["image", "video", "frame", "text", "audio"]
InstanceType = Literal[
    "box",
    "polygon",
    "line",
    "point",
    "keypoints",
    "cuboid",
    "ellipse",
    "tag",
    "global",
    "event",
    "span",
    "relation",
]
AttributeKind = Literal["select", "multi_select", "radio", "text", "number", "date"]
BlobMode = Literal["inline", "url", "none"]

SPATIAL_TYPES: frozenset[str] = frozenset(
    {"box", "polygon", "line", "point", "keypoints", "cuboid", "ellipse"}
)
# Instances over a range (frames of a video, characters of a text) and links between spans:
# not counted as labels of the file except spans (``labels.<name>`` counts spans).
RANGE_TYPES: frozenset[str] = frozenset({"event", "span"})


M = TypeVar("M", bound=BaseModel)

INT64_MAX = (1 << 63) - 1
INT32_MAX = (1 << 31) - 1
# Ids and revisions as the database stores them: ids are int64, revisions (and the change
# feed's cursors) int32 columns. Every route takes them through these types, so 2**63, 2**31
# for a revision, or -1 is a 422 naming the field, never a 500 from the database driver.
Id64 = Annotated[int, Field(ge=0, le=INT64_MAX)]
Rev = Annotated[int, Field(ge=0, le=INT32_MAX)]


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL (PostgreSQL text cannot hold it)")
    return value


def has_nul(value: Any) -> bool:
    """Whether a JSON value holds NUL in any string, key or value, at any depth."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


# Text that reaches the database (stored, or compared in a lookup) holds no NUL.
NoNul = AfterValidator(_no_nul)
# Frame numbers and track ids are int32 columns too.
FrameNumber = Annotated[int, Field(ge=0, le=INT32_MAX)]
TrackId = Annotated[int, Field(ge=-INT32_MAX - 1, le=INT32_MAX)]
# Bounded text columns (store/tables.py) get the same bound here, so an over-long value is a
# 422 naming its field on every database (SQLite would store it, PostgreSQL refuse it).
Name = Annotated[str, Field(min_length=1, max_length=200), NoNul]
# A label colour: CSS hex (#rgb, #rgba, #rrggbb, #rrggbbaa) or a colour keyword, in 16 characters.
Color = Annotated[
    str, Field(max_length=16, pattern=r"^(#([0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})|[a-zA-Z]{1,16})$")
]

_BAD_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


def _dataset_name(value: str) -> str:
    if value != value.strip() or value in (".", "..") or _BAD_NAME.search(value):
        raise ValueError(
            "must not contain '/', '\\', control characters (CR, LF, NUL...), "
            "surrounding spaces, or be '.' or '..'"
        )
    return value


# A dataset name becomes a URL segment and an export folder name: no separators or controls.
DatasetName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_dataset_name)]
_DATASET_NAME: TypeAdapter[str] = TypeAdapter(DatasetName)


def dataset_name(value: str, field: str = "name") -> str:
    """``value`` when it may name a new dataset, else InvalidInput naming ``field``."""
    try:
        return _DATASET_NAME.validate_python(value)
    except ValidationError as exc:
        raise InvalidInput(f"{field}: {exc.errors()[0]['msg']}", {"field": field}) from exc


def validate(model: type[M], data: Any, where: str = "") -> M:
    """``model`` from ``data``, or InvalidInput naming the first bad field (``where.field``)."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        field = ".".join(p for p in (where, loc) if p) or model.__name__
        raise InvalidInput(f"{field}: {first['msg']}", {"field": field}) from exc


class ErrorDetail(BaseModel):
    code: str
    message: str
    detail: Any = None


class ErrorBody(BaseModel):
    """Every refusal, on every route: ``{"error": {"code", "message", "detail"}}``."""

    error: ErrorDetail


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# The refusals every route may answer, documented once (OpenAPI) for all of them.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    # text/plain: a request line or headers too long for the HTTP server, refused before the app.
    400: {
        **_error("Malformed request or query (the error says where)"),
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
    401: _error("No credentials where they are needed, or a malformed, unknown or revoked key"),
    403: _error("Valid credentials that do not grant this"),
    404: _error("No such project, dataset, file, revision or tag"),
    409: _error("Conflicts with what exists"),
    413: _error("Body, image or result over a configured limit"),
    422: _error("Invalid value (the error names the field)"),
    429: _error("Over a per-caller limit; see Retry-After"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectCreate(_Strict):
    string_id: str = Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,99}$")
    name: Annotated[str, NoNul] | None = Field(default=None, max_length=200)
    is_public: bool = False


class KeyCreate(_Strict):
    role: Role = "viewer"


class DatasetCreate(_Strict):
    name: DatasetName


class LabelCreate(_Strict):
    name: Name
    color: Color | None = None


class AttributeGroupCreate(_Strict):
    name: Name
    kind: AttributeKind = "select"
    options: list[Name] = Field(default_factory=list, max_length=10_000)


# --- what the store sends out ------------------------------------------------------------
# Plain dicts on the hot path, never validated on the way out; these TypedDicts say what they
# hold, so that every signature they cross names them instead of ``dict``.

ChangeKind = Literal["file_added", "file_removed", "instances_changed"]


class FileInfo(TypedDict):
    """An item's file: its blob (by sha256) and what is known about it at the item's revision."""

    id: int
    name: str
    type: str
    sha256: str | None
    size: int | None
    content_type: str | None
    width: int | None
    height: int | None
    frame_count: int | None
    fps: float | None
    duration: float | None  # video: probed at upload, with codec and keyframe numbers
    codec: str | None
    keyframes: list[int] | None
    text: str | None
    metadata: dict[str, Any]
    parent_id: int | None
    frame_number: int | None
    created_rev: int
    blob_url: NotRequired[str | None]  # items read with ``blobs="url"``


class Instance(TypedDict):
    """One annotation as it is read: its label by name and by stable id (1..N, 0 = none),
    ``bbox`` as [x_min, y_min, x_max, y_max] pixels (None for tags and globals)."""

    id: int
    type: str
    label: str | None
    label_id: int | None
    frame_number: int | None
    geometry: dict[str, Any]
    bbox: list[float] | None
    area: float | None
    iscrowd: bool
    attributes: dict[str, Any]
    track_id: int | None
    keyframe: bool | None
    machine_made: bool


class Item(TypedDict):
    """A file with its instances, as of one revision: the unit every read returns."""

    id: int
    file: FileInfo
    instances: list[Instance]


class ChangeEvent(TypedDict):
    """What one commit did to one file of a view (see ``service.changes``)."""

    rev: int
    kind: ChangeKind
    file_id: int
    dataset: str | None


class ChangePage(TypedDict):
    """One page of the change feed: whole commits after the asked revision, up to ``cursor``."""

    events: list[ChangeEvent]
    cursor: int
    head: int


class Sample(TypedDict):
    """An item made ready to train on (``client.sample.make_sample``).

    ``boxes`` float32 [N, 4] (xyxy pixels), ``labels`` and ``label_ids`` int64 [N] are aligned
    and cover the spatial instances with a bbox, in instance order; ``polygons`` and
    ``keypoints`` hold one float32 array of points per such instance; ``tags`` the labels of
    tag instances; ``attributes`` the file-level (global) attributes. ``event`` is there on
    samples from ``follow_items``.
    """

    image: Any
    file: FileInfo
    instances: list[Instance]
    boxes: np.ndarray
    labels: list[str | None]
    label_ids: np.ndarray
    polygons: list[np.ndarray]
    keypoints: list[np.ndarray]
    tags: list[str | None]
    attributes: dict[str, Any]
    event: NotRequired[ChangeEvent]
    text: NotRequired[str]  # text files: the text, its spans and relations (client.sample)
    spans: NotRequired[list[dict[str, Any]]]
    relations: NotRequired[list[dict[str, Any]]]


class InstanceIn(BaseModel):
    """One annotation as a writer sends it. ``geometry`` is checked per ``type``."""

    model_config = ConfigDict(extra="forbid")

    type: InstanceType
    label: Name | None = None
    geometry: dict[str, Any] = Field(default_factory=dict)
    attributes: dict[str, Any] = Field(default_factory=dict)
    frame_number: FrameNumber | None = None
    track_id: TrackId | None = None
    # On a track: an annotated keyframe (default) or a stored interpolated instance.
    keyframe: bool | None = None
    machine_made: bool = False
    iscrowd: bool = False
    area: float | None = None
    # Explicit [x_min, y_min, x_max, y_max]; computed from the geometry when absent.
    bbox: list[float] | None = Field(default=None, min_length=4, max_length=4)

    @field_validator("attributes")
    @classmethod
    def _attributes_without_nul(cls, value: dict[str, Any]) -> dict[str, Any]:
        # attribute values are indexed as text (service/attribute_index.py)
        if has_nul(value):
            raise ValueError("attribute names and values must not contain NUL")
        return value


class InstancesWrite(_Strict):
    instances: list[InstanceIn]


class ItemsBatchRequest(_Strict):
    ids: list[Id64] = Field(max_length=10_000)
    as_of: Rev | None = None
    blobs: BlobMode = "none"


class TagCreate(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=100), NoNul]
    rev: Rev | None = None
