"""YOLO: ``data.yaml``, ``images/`` and ``labels/`` with one txt file per image.

Class index = the label's stable index - 1 (so a project's classes keep their numbers across
exports). Detection lines are ``class cx cy w h``, segmentation lines ``class x1 y1 x2 y2 ...``,
all normalised to [0, 1] by the image size. Images without instances get an empty txt file
(background images, as YOLO trainers expect). A file whose ``metadata.split`` is train, val or
test goes to ``images/<split>/`` and ``labels/<split>/``, and data.yaml points at those
folders; files without one stay in ``images/`` (counted as ``unsplit`` in the result).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from PIL import Image

from annostream.errors import InvalidInput
from annostream.formats import (
    BlobSource,
    ExportContext,
    ImportSource,
    Sink,
    UniqueNames,
    put_image,
    record_error,
)
from annostream.formats.images import IMAGE_SUFFIXES
from annostream.paths import confine

SPLITS = ("train", "val", "test")
# A normalised coordinate may exceed [0, 1] by this much (float noise of other tools).
TOLERANCE = 1e-3


def _fmt(values: list[float]) -> str:
    return " ".join(f"{v:.6f}" for v in values)


def label_lines(item: dict[str, Any], segment: bool) -> tuple[list[str], int]:
    """(txt lines, instances skipped) for one item."""
    f = item["file"]
    w, h = f["width"], f["height"]
    lines, skipped = [], 0
    for inst in item["instances"]:
        if inst["label_id"] is None or inst["bbox"] is None:
            skipped += 1
            continue
        cls = inst["label_id"] - 1
        x0, y0, x1, y1 = inst["bbox"]
        if not segment:
            lines.append(
                f"{cls} {_fmt([(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h])}"
            )
        elif inst["type"] == "polygon":
            g = inst["geometry"]
            for ring in [g["points"], *g.get("parts", [])]:
                lines.append(
                    f"{cls} {_fmt([c / (w if i % 2 == 0 else h) for p in ring for i, c in enumerate(p[:2])])}"
                )
        elif inst["type"] == "box":
            lines.append(f"{cls} {_fmt([x0 / w, y0 / h, x1 / w, y0 / h, x1 / w, y1 / h, x0 / w, y1 / h])}")
        else:
            skipped += 1
    return lines, skipped


class YoloWriter:
    """Streams items into images/ and labels/; data.yaml is written at the end."""

    def __init__(self, sink: Sink, ctx: ExportContext, blobs: BlobSource, *, segment: bool) -> None:
        self.sink, self.ctx, self.blobs, self.segment = sink, ctx, blobs, segment
        self.names = UniqueNames()
        self.files = self.instances = self.skipped = self.unsplit = 0
        self.splits: set[str] = set()

    def add(self, item: dict[str, Any]) -> None:
        f = item["file"]
        if f["type"] != "image" or not f["width"] or not f["height"]:
            self.skipped += len(item["instances"])
            return
        name = self.names(f["name"], f["id"])
        split = (f.get("metadata") or {}).get("split")
        if split in SPLITS:
            self.splits.add(split)
            name = f"{split}/{name}"
        else:
            self.unsplit += 1
        put_image(self.sink, f"images/{name}", f["sha256"], self.blobs, self.ctx.images)
        lines, skipped = label_lines(item, self.segment)
        self.sink.write(
            str(PurePosixPath("labels", name).with_suffix(".txt")),
            ["".join(line + "\n" for line in lines).encode()],
        )
        self.files += 1
        self.instances += len(item["instances"]) - skipped
        self.skipped += skipped

    def finish(self) -> dict[str, Any]:
        names = {lab["id"] - 1: lab["name"] for lab in self.ctx.labels}
        folders = {split: f"images/{split}" for split in SPLITS if split in self.splits}
        train = folders.get("train", "images" if not folders else next(iter(folders.values())))
        data: dict[str, Any] = {"path": ".", "train": train, "val": folders.get("val", train)}
        if "test" in folders:
            data["test"] = folders["test"]
        data.update(
            {
                "nc": max(names, default=-1) + 1,
                "names": names,
                "task": "segment" if self.segment else "detect",
            }
        )
        self.sink.write("data.yaml", [yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode()])
        result = {"files": self.files, "instances": self.instances, "skipped": self.skipped}
        if self.splits:
            result["unsplit"] = self.unsplit
        return result


def read_yolo(root: Path) -> ImportSource:
    """A YOLO folder (data.yaml, images/, labels/) as import records, boxes and polygons in pixels."""
    data_path = root / "data.yaml"
    try:
        data = yaml.safe_load(data_path.read_text())
    except FileNotFoundError as exc:
        raise record_error(str(data_path), "no such file") from exc
    except yaml.YAMLError as exc:
        raise record_error(str(data_path), f"not valid YAML ({exc})") from exc
    raw_names = (data or {}).get("names")
    if isinstance(raw_names, list):
        names = dict(enumerate(raw_names))
    elif isinstance(raw_names, dict):
        names = {int(k): v for k, v in raw_names.items()}
    else:
        raise record_error(str(data_path), "needs 'names' (a list or a mapping of class index to name)")
    dirs: list[tuple[str, Path]] = []
    for split in ("train", "val", "test"):
        value = data.get(split)
        if not isinstance(value, str):
            continue
        # Only folders inside the given one are read (data.yaml's 'path' and splits included).
        try:
            folder = confine(root, f"{data.get('path') or '.'}/{value}", f"data.yaml {split}")
        except InvalidInput:
            continue
        if folder.is_dir() and folder not in [d for _, d in dirs]:
            dirs.append((split, folder))
    if not dirs:
        dirs = [("train", root / "images")]
    labels = [{"name": names[k], "color": None, "spec": {}} for k in sorted(names)]
    return ImportSource(labels, [], _records(root, names, dirs, len(dirs) > 1))


def _label_file(image: Path) -> Path:
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _records(
    root: Path, names: dict[int, str], dirs: list[tuple[str, Path]], with_split: bool
) -> Iterator[dict[str, Any]]:
    for split, folder in dirs:
        for image in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            rel = image.relative_to(folder).as_posix()
            try:
                with Image.open(image) as img:
                    w, h = img.size
            except OSError as exc:
                raise record_error(str(image), f"not a readable image ({exc})") from exc
            txt = _label_file(image)
            instances = list(_instances(txt, names, w, h)) if txt.is_file() else []
            yield {
                "where": f"{image.relative_to(root)}",
                "name": rel,
                "image_path": str(image),
                "sha256": None,
                "metadata": {"split": split} if with_split else {},
                "instances": instances,
                "width": w,
                "height": h,
            }


def _instances(txt: Path, names: dict[int, str], w: int, h: int) -> Iterator[dict[str, Any]]:
    for n, line in enumerate(txt.read_text().splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{txt} line {n}"
        try:
            cls = int(tokens[0])
            values = [float(t) for t in tokens[1:]]
        except ValueError as exc:
            raise record_error(where, f"expected 'class x y ...' numbers, got {line!r}") from exc
        if cls not in names:
            raise record_error(
                where, f"class index {cls} out of range (data.yaml names {min(names)}..{max(names)})"
            )
        if any(v < -TOLERANCE or v > 1 + TOLERANCE for v in values):
            raise record_error(where, "coordinates must be normalised to [0, 1]")
        if len(values) == 4:
            cx, cy, bw, bh = values
            geom = {
                "x_min": (cx - bw / 2) * w,
                "y_min": (cy - bh / 2) * h,
                "x_max": (cx + bw / 2) * w,
                "y_max": (cy + bh / 2) * h,
            }
            yield {"type": "box", "label": names[cls], "geometry": geom}
        elif len(values) >= 6 and len(values) % 2 == 0:
            points = [[values[i] * w, values[i + 1] * h] for i in range(0, len(values), 2)]
            yield {"type": "polygon", "label": names[cls], "geometry": {"points": points}}
        else:
            raise record_error(
                where, f"expected 4 box values or an even number (>= 6) of polygon values, got {len(values)}"
            )
