"""Diffgram JSON: the export file Diffgram users already have, read and written as a stream.

Shape: top-level ``readme``, ``label_map`` (label file id -> name), ``label_colour_map``,
``export_info``, ``attribute_groups_reference``, then one key per file id holding ``file``,
``image`` (or ``video``), ``instance_list`` and ``sequence_list``. Here the label file id is
the label's stable index. Coordinates that are zero are written as ``0``, never dropped
(Diffgram's own exporter dropped them). The reader walks the top-level keys with ijson, so
a file of any size is read one file entry at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from annostream.formats import (
    BlobSource,
    ExportContext,
    ImportSource,
    Sink,
    Spool,
    UniqueNames,
    num,
    put_image,
    record_error,
)
from annostream.paths import confine

FILENAME = "diffgram.json"
# Instance types Diffgram has no shape for (video events, text spans and relations).
RANGE_KINDS = ("event", "span", "relation")
META_KEYS = ("readme", "label_map", "label_colour_map", "export_info", "attribute_groups_reference")


def _pts(points: list[list[float]]) -> list[dict[str, Any]]:
    return [{"x": num(p[0]), "y": num(p[1])} for p in points]


def instance_out(inst: dict[str, Any]) -> dict[str, Any]:
    """One instance in Diffgram's instance shape."""
    out: dict[str, Any] = {
        "id": inst["id"],
        "type": inst["type"],
        "label_file_id": inst["label_id"],
        "label_file": {"label": {"name": inst["label"]}} if inst["label"] else None,
        "frame_number": inst["frame_number"],
        "number": inst["track_id"],
        "machine_made": inst["machine_made"],
        "attribute_groups": inst["attributes"],
    }
    if inst.get("keyframe") is not None:
        out["interpolated"] = not inst["keyframe"]
    if inst["type"] in RANGE_KINDS:  # no Diffgram form: kept under our own key
        out["annostream_geometry"] = inst["geometry"]
    if inst["bbox"] is not None:
        x0, y0, x1, y1 = inst["bbox"]
        out.update(
            x_min=num(x0),
            y_min=num(y0),
            x_max=num(x1),
            y_max=num(y1),
            width=num(x1 - x0),
            height=num(y1 - y0),
        )
    g = inst["geometry"]
    t = inst["type"]
    if t in ("polygon", "line"):
        out["points"] = _pts(g["points"])
        if g.get("parts"):
            out["parts"] = [_pts(p) for p in g["parts"]]
    elif t == "point":
        out["points"] = _pts([[g["x"], g["y"]]])
    elif t == "keypoints":
        out["nodes"] = [
            {
                "x": num(p[0]),
                "y": num(p[1]),
                "occluded": len(p) == 3 and p[2] == 1,
                "visible": len(p) == 2 or p[2] != 0,
            }
            for p in g["points"]
        ]
        out["edges"] = []
    elif t == "cuboid":
        out["front_face"], out["rear_face"] = _pts(g["front"]), _pts(g["rear"])
    elif t == "ellipse":
        out.update(
            center_x=num(g["cx"]),
            center_y=num(g["cy"]),
            width=num(g["rx"]),
            height=num(g["ry"]),
            angle=num(g["angle"]),
        )
    return out


def sequences(instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Diffgram's sequence list: one entry per track, with its label and keyframe numbers."""
    tracks: dict[int, dict[str, Any]] = {}
    for inst in instances:
        if inst["track_id"] is None or inst["frame_number"] is None:
            continue
        seq = tracks.setdefault(
            inst["track_id"],
            {
                "number": inst["track_id"],
                "label_file_id": inst["label_id"],
                "keyframe_list": {"frame_number_list": []},
            },
        )
        if inst.get("keyframe") is not False:
            seq["keyframe_list"]["frame_number_list"].append(inst["frame_number"])
    for seq in tracks.values():
        seq["keyframe_list"]["frame_number_list"].sort()
    return [tracks[k] for k in sorted(tracks)]


class DiffgramWriter:
    """Streams items into diffgram.json (entries spooled) and images/."""

    def __init__(self, sink: Sink, ctx: ExportContext, blobs: BlobSource) -> None:
        self.sink, self.ctx, self.blobs = sink, ctx, blobs
        self.entries = Spool()
        self.names = UniqueNames()
        self.instances = 0

    def add(self, item: dict[str, Any]) -> None:
        f = item["file"]
        name = self.names(f["name"], f["id"])
        rel = f"images/{name}" if f["sha256"] and self.ctx.images else None
        if rel:
            put_image(self.sink, rel, f["sha256"], self.blobs, self.ctx.images)
        kind = "video" if f["type"] == "video" else "image"
        entry = {
            "file": {
                "id": f["id"],
                "original_filename": f["name"],
                "type": f["type"],
                "hash": f["sha256"],
                "metadata": f["metadata"],
            },
            kind: {
                "original_filename": f["name"],
                "width": f["width"],
                "height": f["height"],
                "annostream_image_path": rel,
                **({"frame_count": f["frame_count"], "fps": f["fps"]} if kind == "video" else {}),
            },
            "instance_list": [instance_out(i) for i in item["instances"]],
            "sequence_list": sequences(item["instances"]),
        }
        self.entries.append(orjson.dumps(str(f["id"])) + b":" + orjson.dumps(entry), b",\n")
        self.instances += len(item["instances"])

    def _document(self) -> Iterator[bytes]:
        head = {
            "readme": {
                "_": "Diffgram-compatible export written by annostream. label_map maps label "
                "file ids to names; then one key per file id."
            },
            "label_map": {str(lab["id"]): lab["name"] for lab in self.ctx.labels},
            "label_colour_map": {str(lab["id"]): lab["color"] for lab in self.ctx.labels},
            "export_info": {"format": "diffgram-json", **self.ctx.provenance()},
            "attribute_groups_reference": {
                g["name"]: {"kind": g["kind"], "options": g["options"]} for g in self.ctx.attribute_groups
            },
        }
        yield orjson.dumps(head)[:-1]
        if self.entries.count:
            yield b",\n"
            yield from self.entries.chunks()
        yield b"}\n"

    def finish(self) -> dict[str, Any]:
        self.sink.write(FILENAME, self._document())
        counts = {"files": self.entries.count, "instances": self.instances}
        self.entries.close()
        return counts


def _xy(points: list[dict[str, Any]]) -> list[list[float]]:
    return [[p.get("x", 0), p.get("y", 0)] for p in points]


def instance_in(d: dict[str, Any], label_map: dict[str, str]) -> dict[str, Any]:
    """A Diffgram instance as an annostream instance dict (pixels)."""
    t = d.get("type")
    label_id = d.get("label_file_id")
    label = label_map.get(str(label_id)) if label_id is not None else None
    if label is None and isinstance(d.get("label_file"), dict):
        label = (d["label_file"].get("label") or {}).get("name")
    if label is None and isinstance(d.get("label_name"), str):
        label = d["label_name"]
    out: dict[str, Any] = {
        "type": t,
        "label": label,
        "frame_number": d.get("frame_number"),
        "track_id": d.get("number"),
        "machine_made": bool(d.get("machine_made")),
    }
    if isinstance(d.get("interpolated"), bool) and d.get("number") is not None:
        out["keyframe"] = not d["interpolated"]
    if t in RANGE_KINDS:
        out["geometry"] = d.get("annostream_geometry") or {}
    attrs = d.get("attribute_groups")
    if isinstance(attrs, dict) and attrs:
        out["attributes"] = attrs
    corners = [d.get(k) for k in ("x_min", "y_min", "x_max", "y_max")]
    if t not in ("box", "tag", "global") and all(isinstance(c, (int, float)) for c in corners):
        out["bbox"] = corners
    if t == "box":
        out["geometry"] = {k: d.get(k, 0) for k in ("x_min", "y_min", "x_max", "y_max")}
    elif t in ("polygon", "line"):
        out["geometry"] = {"points": _xy(d.get("points") or [])}
        if d.get("parts"):
            out["geometry"]["parts"] = [_xy(p) for p in d["parts"]]
    elif t == "point":
        ((x, y),) = _xy(d.get("points") or [{}])[:1] or [[0, 0]]
        out["geometry"] = {"x": x, "y": y}
    elif t == "keypoints":
        out["geometry"] = {
            "points": [
                [
                    n.get("x", 0),
                    n.get("y", 0),
                    0 if n.get("visible") is False else 1 if n.get("occluded") else 2,
                ]
                for n in d.get("nodes") or []
            ]
        }
    elif t == "cuboid":
        out["geometry"] = {"front": _xy(d.get("front_face") or []), "rear": _xy(d.get("rear_face") or [])}
    elif t == "ellipse":
        out["geometry"] = {
            "cx": d.get("center_x", 0),
            "cy": d.get("center_y", 0),
            "rx": d.get("width", 0),
            "ry": d.get("height", 0),
            "angle": d.get("angle", 0),
        }
    return out


def read_diffgram(path: Path) -> ImportSource:
    """A Diffgram JSON export: labels from ``label_map``, files one entry at a time.

    Images are looked up next to the file: ``annostream_image_path``, then
    ``images/<original_filename>``, then ``<original_filename>``.
    """
    import ijson

    head: dict[str, Any] = {}
    with open(path, "rb") as f:
        try:
            for key, value in ijson.kvitems(f, "", use_float=True):
                if key not in META_KEYS:
                    break
                head[key] = value
        except ijson.JSONError as exc:
            raise record_error(str(path), f"not valid JSON, truncated? ({exc})") from exc
    if "label_map" not in head:
        raise record_error(str(path), "not a Diffgram export: no 'label_map' before the first file")
    label_map = {str(k): v for k, v in head["label_map"].items()}
    colours = head.get("label_colour_map") or {}
    labels = [
        {"name": name, "color": colours.get(k) if isinstance(colours.get(k), str) else None, "spec": {}}
        for k, name in sorted(label_map.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0)
    ]
    groups = [
        {"name": n, "kind": g.get("kind", "select"), "options": g.get("options", [])}
        for n, g in (head.get("attribute_groups_reference") or {}).items()
        if isinstance(g, dict) and "kind" in g
    ]
    return ImportSource(labels, groups, _records(path, label_map))


def _records(path: Path, label_map: dict[str, str]) -> Iterator[dict[str, Any]]:
    import ijson

    root = path.parent
    last = "the header"
    with open(path, "rb") as f:
        try:
            for key, entry in ijson.kvitems(f, "", use_float=True):
                if key in META_KEYS:
                    continue
                where = f"{path.name} file {key}"
                if not isinstance(entry, dict) or "instance_list" not in entry:
                    raise record_error(where, "not a file entry (needs 'instance_list')")
                media = entry.get("image") or entry.get("video") or {}
                name = media.get("original_filename") or (entry.get("file") or {}).get("original_filename")
                if not name:
                    raise record_error(where, "no original_filename")
                candidates = [media.get("annostream_image_path"), f"images/{name}", name]
                paths = [confine(root, c, f"{where}.original_filename") for c in candidates if c]
                image = next((p for p in paths if p.is_file()), None)
                meta = (entry.get("file") or {}).get("metadata") or {}
                try:
                    instances = [instance_in(i, label_map) for i in entry["instance_list"]]
                except (TypeError, ValueError, AttributeError) as exc:
                    raise record_error(where, f"malformed instance ({exc})") from exc
                last = f"file {key}"
                yield {
                    "where": f"{where} ('{name}')",
                    "name": name,
                    "image_path": str(image) if image else None,
                    "sha256": (entry.get("file") or {}).get("hash"),
                    "metadata": meta,
                    "instances": instances,
                    "width": media.get("width"),
                    "height": media.get("height"),
                }
        except ijson.JSONError as exc:
            raise record_error(str(path), f"not valid JSON after {last}, truncated? ({exc})") from exc
