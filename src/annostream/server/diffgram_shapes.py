"""Diffgram's JSON shapes, both ways: our datasets, items and instances as the official SDK
(``diffgram==0.15.0``) reads them, and the instances it uploads as ours.

Pure translation: no store, no policy. Invariant: a packet that cannot be translated is a 400
naming the field (the SDK shows the text of a 400 only), never a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from annostream.errors import BadRequest
from annostream.schema import INT32_MAX, INT64_MAX, Instance, Item
from annostream.service.datasets import DatasetRef


def int64(value: Any, field: str) -> int:
    """An id from a loosely typed packet: a non-negative int64, else 400 naming the field."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, str))
        or not str(value).isdigit()
        or int(value) > INT64_MAX
    ):
        raise BadRequest(f"{field}: must be an integer id in [0, 2**63)", {"field": field})
    return int(value)


def directory_json(ds: DatasetRef) -> dict[str, Any]:
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


def _xy(points: list[list[float]]) -> list[dict[str, float]]:
    return [{"x": p[0], "y": p[1]} for p in points]


def instance_json(inst: Instance) -> dict[str, Any]:
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


def file_json(item: Item, with_instances: bool, signed_url: Callable[[str], str]) -> dict[str, Any]:
    """An item as Diffgram's ``file_serialized``; images and videos get ``signed_url(sha256)``."""
    f = item["file"]
    image = None
    if f["type"] in ("image", "frame") and f["sha256"]:
        image = {
            "url_signed": signed_url(f["sha256"]),
            "width": f["width"],
            "height": f["height"],
            "original_filename": f["name"],
            "content_type": f["content_type"],
        }
    video = None
    if f["type"] == "video" and f["sha256"]:
        video = {
            "url_signed": signed_url(f["sha256"]),
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
        out["instance_list"] = [instance_json(i) for i in item["instances"]]
    return out


def _point(raw: Any, at: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise BadRequest(f"{at}: a point is an object with x and y", {"field": at})
    return raw


def instance_in(raw: Any, at: str, label_names: dict[int, str]) -> dict[str, Any]:
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
        label = label_names.get(int64(raw["label_file_id"], f"{at}.label_file_id"))
        if label is None:
            raise BadRequest(f"{at}.label_file_id: unknown label {raw['label_file_id']}", {"field": at})
    points = raw.get("points") or []
    if not isinstance(points, list):
        raise BadRequest(f"{at}.points: a list of points", {"field": f"{at}.points"})
    points = [_point(p, f"{at}.points[{i}]") for i, p in enumerate(points)]
    if kind == "box":
        geometry = {k: raw.get(k) for k in ("x_min", "y_min", "x_max", "y_max")}
    elif kind in ("polygon", "line"):
        geometry = {"points": [[p.get("x"), p.get("y")] for p in points]}
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


def frame_packets(frame_map: Any, label_names: dict[int, str]) -> list[dict[str, Any]]:
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
        if not str(key).isdigit() or int(key) > INT32_MAX or not isinstance(raws, list):
            raise BadRequest(f"{at}: keys are frame numbers, values lists of instances", {"field": at})
        for i, raw in enumerate(raws):
            inst = instance_in(raw, f"{at}[{i}]", label_names)
            inst["frame_number"] = int(key)
            if isinstance(raw.get("number"), int):
                inst["track_id"] = raw["number"]
            out.append(inst)
    return out
