"""Instances drawn over their image: one SVG renderer (explorer pages, notebook HTML) and one
Pillow renderer (notebook PNG), both from the same shapes and the same label colours.

Invariants: the SVG's ``viewBox`` is the image's own pixel grid (``0 0 width height``), so
every coordinate in it is an instance coordinate as stored, whatever size the picture is
shown at; every piece of text that reaches the SVG is escaped here (labels are user text).
Each drawn instance is one element of class ``inst`` carrying ``data-instance`` (its id).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

PALETTE = (
    "#e6194b",
    "#3cb44b",
    "#ffe119",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#bfef45",
    "#fabed4",
    "#469990",
    "#dcbeff",
    "#9a6324",
    "#800000",
)
_HEX = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


def label_color(label_id: int | None, color: str | None = None) -> str:
    """A label's colour: its own when it is a plain hex colour, else one from the palette."""
    if color and _HEX.match(color):
        return color
    return PALETTE[(label_id or 0) % len(PALETTE)]


@dataclass(frozen=True)
class Shape:
    """One drawable instance: a kind (rect, polygon, polyline, points, ellipse) and points."""

    kind: str
    points: tuple[tuple[float, float], ...]
    label: str
    color: str
    instance_id: int
    extra: tuple[float, ...] = ()
    frame: int | None = None  # a video's frame number, None on an image
    interpolated: bool = False  # a track's box between two keyframes, computed, not stored


def _xy(points: Iterable[Any]) -> tuple[tuple[float, float], ...]:
    return tuple((float(p[0]), float(p[1])) for p in points)


def shapes(instances: Iterable[Mapping[str, Any]], colors: Mapping[int, str] | None = None) -> list[Shape]:
    """The drawable instances (tags and globals have no geometry), in the order given."""
    out: list[Shape] = []
    for inst in instances:
        kind, g = inst.get("type"), inst.get("geometry") or {}
        color = label_color(inst.get("label_id"), (colors or {}).get(inst.get("label_id") or -1))
        label, iid = inst.get("label") or "", int(inst.get("id") or 0)
        start = len(out)
        if kind == "box" and inst.get("bbox"):
            x0, y0, x1, y1 = (float(v) for v in inst["bbox"])
            out.append(Shape("rect", ((x0, y0), (x1, y1)), label, color, iid))
        elif kind == "polygon":
            out.append(Shape("polygon", _xy(g.get("points", [])), label, color, iid))
        elif kind == "line":
            out.append(Shape("polyline", _xy(g.get("points", [])), label, color, iid))
        elif kind == "point":
            out.append(Shape("points", ((float(g["x"]), float(g["y"])),), label, color, iid))
        elif kind == "keypoints":
            seen = [p for p in g.get("points", []) if len(p) == 2 or p[2] > 0]
            out.append(Shape("points", _xy(seen), label, color, iid))
        elif kind == "cuboid":
            out.append(Shape("polygon", _xy(g.get("front", [])), label, color, iid))
        elif kind == "ellipse":
            out.append(
                Shape(
                    "ellipse",
                    ((float(g["cx"]), float(g["cy"])),),
                    label,
                    color,
                    iid,
                    (float(g["rx"]), float(g["ry"]), float(g.get("angle") or 0.0)),
                )
            )
        elif inst.get("bbox") and kind not in ("tag", "global"):
            x0, y0, x1, y1 = (float(v) for v in inst["bbox"])
            out.append(Shape("rect", ((x0, y0), (x1, y1)), label, color, iid))
        if inst.get("frame_number") is not None and len(out) > start:
            out[-1] = replace(
                out[-1], frame=int(inst["frame_number"]), interpolated=bool(inst.get("interpolated"))
            )
    return out


def _n(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


def _svg_shape(s: Shape, radius: float, frame: int | None = None) -> str:
    off = " off" if frame is not None and s.frame != frame else ""
    on_frame = "" if s.frame is None else f' data-frame="{s.frame}"'
    interpolated = " interpolated" if s.interpolated else ""
    dashed = ' stroke-dasharray="5 4"' if s.interpolated else ""
    common = (
        f'class="inst inst-{s.kind}{off}{interpolated}" data-instance="{s.instance_id}" '
        f'data-label="{_attr(s.label)}"{on_frame} stroke="{s.color}"{dashed} '
        'vector-effect="non-scaling-stroke"'
    )
    title = f"<title>{html.escape(s.label)}</title>"
    if s.kind == "rect":
        (x0, y0), (x1, y1) = s.points
        return (
            f'<rect {common} fill="none" x="{_n(x0)}" y="{_n(y0)}" width="{_n(x1 - x0)}" '
            f'height="{_n(y1 - y0)}">{title}</rect>'
        )
    if s.kind in ("polygon", "polyline"):
        pts = " ".join(f"{_n(x)},{_n(y)}" for x, y in s.points)
        fill = f'fill="{s.color}" fill-opacity="0.15"' if s.kind == "polygon" else 'fill="none"'
        return f'<{s.kind} {common} {fill} points="{pts}">{title}</{s.kind}>'
    if s.kind == "ellipse":
        (cx, cy), (rx, ry, angle) = s.points[0], s.extra
        return (
            f'<ellipse {common} fill="none" cx="{_n(cx)}" cy="{_n(cy)}" rx="{_n(rx)}" ry="{_n(ry)}" '
            f'transform="rotate({_n(angle)} {_n(cx)} {_n(cy)})">{title}</ellipse>'
        )
    dots = "".join(f'<circle cx="{_n(x)}" cy="{_n(y)}" r="{_n(radius)}"/>' for x, y in s.points)
    return f'<g {common} fill="{s.color}">{title}{dots}</g>'


def svg(
    width: int | None,
    height: int | None,
    instances: Iterable[Mapping[str, Any]],
    href: str | None = None,
    *,
    colors: Mapping[int, str] | None = None,
    css_class: str = "overlay",
    frame: int | None = None,
) -> str:
    """An SVG of the image at ``href`` (any URL, a data: URL included) with its instances.

    On a video (``frame`` given), every instance carries ``data-frame`` and those of other
    frames get the class ``off`` (a page hides them, and shows them as it scrubs); a track's
    interpolated box (``interpolated: True``) gets the class ``interpolated`` and a dashed line.
    The result is safe to embed in HTML as is: numbers are formatted, text is escaped.
    """
    w, h = max(int(width or 1), 1), max(int(height or 1), 1)
    radius = max(w, h) / 120
    image = (
        f'<image href="{_attr(href)}" x="0" y="0" width="{w}" height="{h}" preserveAspectRatio="none"/>'
        if href
        else ""
    )
    body = "".join(_svg_shape(s, radius, frame) for s in shapes(instances, colors))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{_attr(css_class)}" viewBox="0 0 {w} {h}" '
        f'data-width="{w}" data-height="{h}" stroke-width="2">{image}'
        f'<g class="instances">{body}</g></svg>'
    )


def timeline(
    instances: Iterable[Mapping[str, Any]],
    frame_count: int,
    *,
    colors: Mapping[int, str] | None = None,
    frame: int = 0,
) -> str:
    """An SVG of a video's events as ranges on its frames (``""`` when it has none).

    Its ``viewBox`` is ``frame_count`` wide, so an event from frame ``start`` to ``end``
    (inclusive) is a bar at x = start, width end - start + 1; overlapping events take lanes
    (each on the first lane free at its start). Each bar is one element of class ``event``
    with ``data-instance``, ``data-start`` and ``data-end``; those covering ``frame`` also carry
    ``on``; a line of class ``cursor`` stands at ``frame``. Text is escaped, numbers formatted."""
    events = sorted(
        (int(g["start"]), int(g["end"]), inst)
        for inst in instances
        if inst.get("type") == "event" and isinstance(g := inst.get("geometry"), Mapping)
    )
    if not events or frame_count < 1:
        return ""
    lane_ends: list[int] = []
    bars = []
    for start, end, inst in events:
        lane = next((n for n, last in enumerate(lane_ends) if last < start), len(lane_ends))
        if lane == len(lane_ends):
            lane_ends.append(end)
        lane_ends[lane] = end
        color = label_color(inst.get("label_id"), (colors or {}).get(inst.get("label_id") or -1))
        label = str(inst.get("label") or "event")
        on = " on" if start <= frame <= end else ""
        bars.append(
            f'<rect class="event{on}" data-instance="{inst.get("id")}" data-start="{start}" '
            f'data-end="{end}" data-label="{_attr(label)}" x="{start}" y="{lane}" '
            f'width="{end - start + 1}" height="0.8" fill="{color}">'
            f"<title>{html.escape(label)}: frames {start}-{end}</title></rect>"
        )
    lanes = len(lane_ends)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" id="timeline" '
        f'viewBox="0 -0.1 {frame_count} {lanes}" preserveAspectRatio="none" data-lanes="{lanes}" '
        f'data-frames="{frame_count}">{"".join(bars)}'
        f'<line class="cursor" x1="{frame + 0.5}" x2="{frame + 0.5}" y1="-0.1" y2="{lanes}" '
        'vector-effect="non-scaling-stroke"/></svg>'
    )


def draw(
    image: Any,
    instances: Iterable[Mapping[str, Any]],
    *,
    colors: Mapping[int, str] | None = None,
    max_side: int | None = None,
) -> Any:
    """A copy of the PIL ``image`` (RGB, at most ``max_side`` pixels a side) with its instances
    drawn by Pillow's ImageDraw, coordinates scaled to the copy."""
    from PIL import ImageDraw

    out = image.convert("RGB")
    scale = 1.0
    if max_side and max(out.size) > max_side:
        scale = max_side / max(out.size)
        out = out.resize((max(1, round(out.width * scale)), max(1, round(out.height * scale))))
    pen = ImageDraw.Draw(out)
    width = max(1, round(max(out.size) / 200))
    radius = max(2.0, max(out.size) / 120)
    for s in shapes(instances, colors):
        pts = [(x * scale, y * scale) for x, y in s.points]
        if s.kind == "rect":
            pen.rectangle([pts[0], pts[1]], outline=s.color, width=width)
        elif s.kind in ("polygon", "polyline") and len(pts) >= 2:
            pen.line(pts + ([pts[0]] if s.kind == "polygon" else []), fill=s.color, width=width)
        elif s.kind == "ellipse":
            (cx, cy), (rx, ry, _) = pts[0], s.extra
            pen.ellipse(
                [cx - rx * scale, cy - ry * scale, cx + rx * scale, cy + ry * scale],
                outline=s.color,
                width=width,
            )
        else:
            for x, y in pts:
                pen.ellipse([x - radius, y - radius, x + radius, y + radius], fill=s.color)
    return out
