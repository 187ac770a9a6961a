"""Instance geometry: the shape each instance type must have, and its bounding box.

Geometry per type (pixel coordinates, origin top-left):

- box:       {"x_min", "y_min", "x_max", "y_max"} (+ "rle" for COCO crowd masks)
- polygon:   {"points": [[x, y], ...] (>= 3), "parts": [[[x, y], ...], ...] (optional rings)}
- line:      {"points": [[x, y], ...] (>= 2)}
- point:     {"x", "y"}
- keypoints: {"points": [[x, y, v], ...], "outline": [[[x, y], ...], ...] (optional)}
- cuboid:    {"front": 4 points, "rear": 4 points}
- ellipse:   {"cx", "cy", "rx", "ry", "angle" (degrees, optional)}
- tag, global: {}
- event:     {"start", "end"}: first and last frame of a video, inclusive
- span:      {"start", "end", "key" (optional)}: characters of a text, end exclusive
- relation:  {"from", "to"}: the keys of two spans of the same text

Every error names the field it is about, so a 422 tells the writer what to fix.
"""

from __future__ import annotations

import math
from typing import Any

from annostream.errors import InvalidInput
from annostream.schema import InstanceIn

# A coordinate may exceed the image by this much (COCO's float boxes often do by a hair).
BOUNDS_TOLERANCE = 1.0

BBox = tuple[float, float, float, float]


def _fail(field: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{field}: {reason}", {"field": field, "reason": reason})


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(field, f"expected a finite number, got {value!r}")
    return float(value)


def _integer(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(field, f"expected an integer, got {value!r}")
    return value


def _key(value: Any, field: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 100:
        raise _fail(field, f"expected a span key (a string of 1 to 100 characters), got {value!r}")
    return value


def _points(value: Any, field: str, minimum: int, dims: tuple[int, ...] = (2,)) -> list[list[float]]:
    if not isinstance(value, list):
        raise _fail(field, "expected a list of points")
    if len(value) < minimum:
        raise _fail(field, f"needs at least {minimum} points, got {len(value)}")
    out = []
    for i, point in enumerate(value):
        if not isinstance(point, (list, tuple)) or len(point) not in dims:
            raise _fail(f"{field}[{i}]", f"expected a point of {' or '.join(map(str, dims))} numbers")
        out.append([_number(c, f"{field}[{i}]") for c in point])
    return out


def _bbox_of(points: list[list[float]]) -> BBox:
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def _check_bounds(bbox: BBox, width: int | None, height: int | None, field: str) -> None:
    x_min, y_min, x_max, y_max = bbox
    if x_min > x_max or y_min > y_max:
        raise _fail(field, f"min exceeds max in {list(bbox)}")
    if width is None or height is None:
        return
    t = BOUNDS_TOLERANCE
    if x_min < -t or y_min < -t or x_max > width + t or y_max > height + t:
        raise _fail(field, f"{list(bbox)} lies outside the image ({width}x{height})")


def normalise(
    inst: InstanceIn, width: int | None, height: int | None, where: str
) -> tuple[dict[str, Any], BBox | None]:
    """Check ``inst`` against its type and image size; return (geometry, bbox)."""
    g = inst.geometry
    field = f"{where}.geometry"
    geometry: dict[str, Any]
    bbox: BBox | None
    if inst.type == "box":
        coords = {k: _number(g.get(k), f"{field}.{k}") for k in ("x_min", "y_min", "x_max", "y_max")}
        geometry = dict(coords)
        if "rle" in g:
            geometry["rle"] = g["rle"]
        bbox = (coords["x_min"], coords["y_min"], coords["x_max"], coords["y_max"])
    elif inst.type in ("polygon", "line"):
        minimum = 3 if inst.type == "polygon" else 2
        points = _points(g.get("points"), f"{field}.points", minimum)
        geometry = {"points": points}
        all_points = list(points)
        if inst.type == "polygon" and g.get("parts"):
            parts = [_points(p, f"{field}.parts[{i}]", 3) for i, p in enumerate(g["parts"])]
            geometry["parts"] = parts
            all_points += [p for part in parts for p in part]
        bbox = _bbox_of(all_points)
    elif inst.type == "point":
        x, y = _number(g.get("x"), f"{field}.x"), _number(g.get("y"), f"{field}.y")
        geometry = {"x": x, "y": y}
        bbox = (x, y, x, y)
    elif inst.type == "keypoints":
        points = _points(g.get("points"), f"{field}.points", 1, dims=(2, 3))
        for i, p in enumerate(points):
            if len(p) == 3 and p[2] not in (0.0, 1.0, 2.0):
                raise _fail(f"{field}.points[{i}]", "visibility must be 0, 1 or 2")
        geometry = {"points": points}
        if g.get("outline"):
            geometry["outline"] = [_points(p, f"{field}.outline[{i}]", 3) for i, p in enumerate(g["outline"])]
        labelled = [p for p in points if len(p) == 2 or p[2] > 0]
        bbox = _bbox_of(labelled) if labelled else None
    elif inst.type == "cuboid":
        front = _points(g.get("front"), f"{field}.front", 4)
        rear = _points(g.get("rear"), f"{field}.rear", 4)
        if len(front) != 4 or len(rear) != 4:
            raise _fail(field, "a cuboid has exactly 4 front and 4 rear points")
        geometry = {"front": front, "rear": rear}
        bbox = _bbox_of(front + rear)
    elif inst.type == "ellipse":
        cx, cy = _number(g.get("cx"), f"{field}.cx"), _number(g.get("cy"), f"{field}.cy")
        rx, ry = _number(g.get("rx"), f"{field}.rx"), _number(g.get("ry"), f"{field}.ry")
        angle = _number(g.get("angle", 0.0), f"{field}.angle")
        if rx < 0 or ry < 0:
            raise _fail(field, "radii must not be negative")
        geometry = {"cx": cx, "cy": cy, "rx": rx, "ry": ry, "angle": angle}
        r = max(rx, ry) if angle % 180 else None
        bbox = (cx - (r or rx), cy - (r or ry), cx + (r or rx), cy + (r or ry))
    elif inst.type in ("event", "span"):
        start, end = _integer(g.get("start"), f"{field}.start"), _integer(g.get("end"), f"{field}.end")
        if start < 0 or end < start or (inst.type == "span" and end == start):
            raise _fail(field, f"start {start} and end {end} are not a range")
        geometry = {"start": start, "end": end}
        if inst.type == "span" and "key" in g:
            geometry["key"] = _key(g["key"], f"{field}.key")
        extra = set(g) - {"start", "end", "key"}
        if extra:
            raise _fail(field, f"unknown fields {sorted(extra)}")
        bbox = None
    elif inst.type == "relation":
        geometry = {"from": _key(g.get("from"), f"{field}.from"), "to": _key(g.get("to"), f"{field}.to")}
        bbox = None
    else:  # tag, global: no geometry at all
        if g:
            raise _fail(field, f"a {inst.type} has no geometry")
        geometry, bbox = {}, None

    if inst.bbox is not None:
        bbox = tuple(_number(v, f"{where}.bbox[{i}]") for i, v in enumerate(inst.bbox))  # type: ignore[assignment]
    if bbox is not None:
        _check_bounds(bbox, width, height, f"{where}.bbox" if inst.bbox is not None else field)
    return geometry, bbox


def area_of(inst_type: str, geometry: dict[str, Any], bbox: BBox | None) -> float | None:
    """The area a detection target wants: polygon area for polygons, else the box area."""
    if inst_type == "polygon":
        rings = [geometry["points"], *geometry.get("parts", [])]
        return float(sum(_shoelace(r) for r in rings))
    if bbox is None:
        return None
    return float((bbox[2] - bbox[0]) * (bbox[3] - bbox[1]))


def _shoelace(points: list[list[float]]) -> float:
    s = 0.0
    for (x1, y1), (x2, y2) in zip(points, points[1:] + points[:1], strict=True):
        s += x1 * y2 - x2 * y1
    return abs(s) / 2.0
