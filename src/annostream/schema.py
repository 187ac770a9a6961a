"""Pydantic models of the wire format, shared by the server, the service and the client.

Items travel as plain dicts (built by the service, serialised with orjson) because they are
the hot path; the models here describe and validate what callers send in.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from annostream.errors import InvalidInput

Role = Literal["viewer", "editor", "admin"]
FileType = Literal["image", "video", "frame", "text", "audio"]
InstanceType = Literal[
    "box", "polygon", "line", "point", "keypoints", "cuboid", "ellipse", "tag", "global",
    "event", "span", "relation",
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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectCreate(_Strict):
    string_id: str = Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,99}$")
    name: str | None = None
    is_public: bool = False


class KeyCreate(_Strict):
    role: Role = "viewer"


class DatasetCreate(_Strict):
    name: str = Field(min_length=1, max_length=200)


class LabelCreate(_Strict):
    name: str = Field(min_length=1, max_length=200)
    color: str | None = None


class AttributeGroupCreate(_Strict):
    name: str = Field(min_length=1, max_length=200)
    kind: AttributeKind = "select"
    options: list[str] = Field(default_factory=list)


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
    label: str | None = None
    geometry: dict[str, Any] = Field(default_factory=dict)
    attributes: dict[str, Any] = Field(default_factory=dict)
    frame_number: int | None = None
    track_id: int | None = None
    # On a track: an annotated keyframe (default) or a stored interpolated instance.
    keyframe: bool | None = None
    machine_made: bool = False
    iscrowd: bool = False
    area: float | None = None
    # Explicit [x_min, y_min, x_max, y_max]; computed from the geometry when absent.
    bbox: list[float] | None = Field(default=None, min_length=4, max_length=4)


class InstancesWrite(_Strict):
    instances: list[InstanceIn]


class ItemsBatchRequest(_Strict):
    ids: list[int] = Field(max_length=10_000)
    as_of: int | None = None
    blobs: BlobMode = "none"


class TagCreate(_Strict):
    name: str = Field(min_length=1, max_length=100)
    rev: int | None = Field(default=None, ge=0)
