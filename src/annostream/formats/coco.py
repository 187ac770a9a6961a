"""COCO: the writer (``annotations.json`` and ``images/``) and the reader (``read_coco``).

Ids are stable across exports of the same revision: an image's id is its file id, an
annotation's id is its instance id, a category's id is its label's stable index. The
image's original COCO id, when it came from a COCO import, stays in ``coco_id``. Boxes,
polygons (with parts), crowd RLE masks and keypoints are written; lines, points, cuboids,
ellipses, tags and globals have no COCO form and are counted as skipped.

A video's annotated frames are written as images (``<name>_f<frame>.jpg``, decoded from the
video when images are included) with ``video_id`` and ``frame_number`` beside the usual
fields; its image id is ``file id * FRAME_ID_BASE + frame number``, and an annotation on a
track keeps its ``track_id`` (an extra field COCO tools ignore).

The images and annotations arrays are spooled to temporary files as items stream in, and
joined into one JSON document at the end: memory stays flat whatever the size. The reader
checks every annotation before it yields the first record, and reads images only inside the
folder it is given (``annostream.paths.confine``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from annostream.errors import InvalidInput
from annostream.formats import (
    BlobSource,
    ExportContext,
    ImportSource,
    Sink,
    Spool,
    UniqueNames,
    put_image,
    record_error,
)
from annostream.paths import confine, safe_name
from annostream.schema import InstanceIn
from annostream.service import geometry

ANNOTATIONS = "annotations.json"
FRAME_ID_BASE = 10_000_000


def category(label: dict[str, Any]) -> dict[str, Any]:
    """A label as a COCO category, keypoint names and skeleton included when its spec has them."""
    spec = label.get("spec") or {}
    cat: dict[str, Any] = {
        "id": label["id"],
        "name": label["name"],
        "supercategory": spec.get("supercategory", ""),
    }
    for key in ("keypoints", "skeleton"):
        if key in spec:
            cat[key] = spec[key]
    return cat


def _flat(points: list[list[float]]) -> list[float]:
    return [c for p in points for c in p[:2]]


def annotation(inst: dict[str, Any], image_id: int) -> dict[str, Any] | None:
    """One instance as one COCO annotation, or None when COCO has no form for its type."""
    if (
        inst["type"] not in ("box", "polygon", "keypoints")
        or inst["bbox"] is None
        or inst["label_id"] is None
    ):
        return None
    x0, y0, x1, y1 = inst["bbox"]
    ann: dict[str, Any] = {
        "id": inst["id"],
        "image_id": image_id,
        "category_id": inst["label_id"],
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "area": inst["area"],
        "iscrowd": int(inst["iscrowd"]),
    }
    if inst.get("track_id") is not None:
        ann["track_id"] = inst["track_id"]
    g = inst["geometry"]
    if inst["type"] == "polygon":
        ann["segmentation"] = [_flat(g["points"]), *(_flat(p) for p in g.get("parts", []))]
    elif inst["type"] == "box" and "rle" in g:
        ann["segmentation"] = g["rle"]
    elif inst["type"] == "keypoints":
        kps = [[p[0], p[1], p[2] if len(p) == 3 else 2.0] for p in g["points"]]
        ann["keypoints"] = [int(c) if i % 3 == 2 else c for p in kps for i, c in enumerate(p)]
        ann["num_keypoints"] = sum(1 for p in kps if p[2] > 0)
        if g.get("outline"):
            ann["segmentation"] = [_flat(r) for r in g["outline"]]
    return ann


def _jpeg(rgb: Any) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=95)
    return out.getvalue()


class CocoWriter:
    """Streams items into a COCO file and an images folder."""

    def __init__(self, sink: Sink, ctx: ExportContext, blobs: BlobSource) -> None:
        self.sink, self.ctx, self.blobs = sink, ctx, blobs
        self.images, self.annotations = Spool(), Spool()
        self.names = UniqueNames()
        self.skipped = 0

    def add(self, item: dict[str, Any]) -> None:
        f = item["file"]
        if f["type"] == "video":
            self._video(item)
            return
        if f["type"] != "image":
            self.skipped += len(item["instances"])
            return
        name = self.names(f["name"], f["id"])
        put_image(self.sink, f"images/{name}", f["sha256"], self.blobs, self.ctx.images)
        extra = {k: v for k, v in f["metadata"].items() if k not in ("id", "file_name", "width", "height")}
        image = {"id": f["id"], "file_name": name, "width": f["width"], "height": f["height"], **extra}
        self.images.append(orjson.dumps(image), b",\n")
        for inst in item["instances"]:
            ann = annotation(inst, f["id"])
            if ann is None:
                self.skipped += 1
            else:
                self.annotations.append(orjson.dumps(ann), b",\n")

    def _video(self, item: dict[str, Any]) -> None:
        """The video's annotated frames as images, each decoded once, in frame order."""
        f = item["file"]
        by_frame: dict[int, list[dict[str, Any]]] = {}
        for inst in item["instances"]:
            if inst["frame_number"] is None:
                self.skipped += 1
            else:
                by_frame.setdefault(inst["frame_number"], []).append(inst)
        if not by_frame:
            return
        decoder = None
        if self.ctx.images:
            from annostream.client.video import VideoDecoder

            decoder = VideoDecoder(self.blobs.get(f["sha256"]), f.get("keyframes"), f["id"])
        stem = f["name"].rsplit(".", 1)[0]
        for k in sorted(by_frame):
            image_id = f["id"] * FRAME_ID_BASE + k
            name = self.names(f"{stem}_f{k:06d}.jpg", image_id)
            if decoder is not None:
                self.sink.write(f"images/{name}", [_jpeg(decoder.frame(k))])
            image = {
                "id": image_id,
                "file_name": name,
                "width": f["width"],
                "height": f["height"],
                "video_id": f["id"],
                "frame_number": k,
            }
            self.images.append(orjson.dumps(image), b",\n")
            for inst in by_frame[k]:
                ann = annotation(inst, image_id)
                if ann is None:
                    self.skipped += 1
                else:
                    self.annotations.append(orjson.dumps(ann), b",\n")
        if decoder is not None:
            decoder.close()

    def _document(self) -> Iterator[bytes]:
        info = {
            "description": f"annostream export of {self.ctx.project}/{self.ctx.dataset}",
            "version": str(self.ctx.revision),
            "date_created": self.ctx.exported_at,
            "annostream": self.ctx.provenance(),
        }
        categories = [category(lab) for lab in self.ctx.labels]
        yield b'{"info":' + orjson.dumps(info) + b',"licenses":[],"categories":' + orjson.dumps(categories)
        yield b',"images":[\n'
        yield from self.images.chunks()
        yield b'\n],"annotations":[\n'
        yield from self.annotations.chunks()
        yield b"\n]}\n"

    def finish(self) -> dict[str, Any]:
        self.sink.write(ANNOTATIONS, self._document())
        counts = {"files": self.images.count, "instances": self.annotations.count, "skipped": self.skipped}
        self.images.close()
        self.annotations.close()
        return counts


# --- reading --------------------------------------------------------------------------

SHAPES = ("auto", "box", "polygon")
EXPECTED = "expected a COCO annotations JSON file (an object with 'images', 'annotations', 'categories')"


def load_coco(path: Path) -> dict[str, Any]:
    """The COCO document at ``path``, or one error naming the file and what was expected."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise record_error(str(path), f"no such file ({EXPECTED})") from exc
    except IsADirectoryError as exc:
        raise record_error(str(path), f"is a folder ({EXPECTED})") from exc
    except OSError as exc:
        raise record_error(str(path), f"cannot be read ({exc.strerror})") from exc
    try:
        coco = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise record_error(str(path), f"not valid JSON ({exc}); {EXPECTED}") from exc
    return check_document(coco, str(path))


def check_document(coco: Any, where: str) -> dict[str, Any]:
    if not isinstance(coco, dict):
        raise record_error(
            where, f"a JSON {type(coco).__name__ if coco is not None else 'null'}, not an object ({EXPECTED})"
        )
    if not isinstance(coco.get("images"), list):
        raise record_error(where, f"not a COCO file: no 'images' list ({EXPECTED})")
    for key in ("annotations", "categories"):
        if not isinstance(coco.get(key, []), list):
            raise record_error(where, f"'{key}' must be a list")
    return coco


def coco_to_instance(ann: dict[str, Any], category: dict[str, Any], shapes: str = "auto") -> InstanceIn:
    """One COCO annotation as one instance, keeping what a COCO export needs back.

    ``shapes``: ``auto`` (keypoints, else the polygon of a polygon segmentation, else the
    box), ``box`` (the ``bbox`` only, whatever else the annotation has), ``polygon`` (the
    polygon segmentation; an annotation without one is refused).
    """
    bbox = ann.get("bbox")
    xyxy = [bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]] if bbox else None
    seg = ann.get("segmentation")
    polygons = seg if isinstance(seg, list) else []
    rings = [[[r[i], r[i + 1]] for i in range(0, len(r) - 1, 2)] for r in polygons]
    kps = ann.get("keypoints") or []
    common = {
        "label": category["name"],
        "iscrowd": bool(ann.get("iscrowd", 0)),
        "area": ann.get("area"),
        "bbox": xyxy,
    }
    if shapes == "auto" and kps and category.get("keypoints"):
        points = [[kps[i], kps[i + 1], kps[i + 2]] for i in range(0, len(kps) - 2, 3)]
        geom: dict[str, Any] = {"points": points}
        if rings:
            geom["outline"] = rings
        return InstanceIn(type="keypoints", geometry=geom, **common)
    if shapes == "polygon" and not rings:
        raise ValueError(
            "--shapes polygon: the annotation has no polygon segmentation "
            "(use --shapes auto to keep boxes, masks and keypoints)"
        )
    if rings and shapes != "box":
        geom = {"points": rings[0]}
        if len(rings) > 1:
            geom["parts"] = rings[1:]
        return InstanceIn(type="polygon", geometry=geom, **common)
    if xyxy is None:
        raise ValueError(
            "an annotation needs a bbox" + (", a segmentation or keypoints" if shapes == "auto" else "")
        )
    geom = dict(zip(("x_min", "y_min", "x_max", "y_max"), xyxy, strict=True))
    if isinstance(seg, dict) and shapes == "auto":
        geom["rle"] = seg
    if shapes == "box":
        common["area"] = None
    return InstanceIn(type="box", geometry=geom, **common)


def read_coco(
    annotations: str | os.PathLike[str] | Any, images: str | os.PathLike[str] | None, shapes: str = "auto"
) -> ImportSource:
    """A COCO file as import records: every annotation is checked first, the first bad one named
    (``annotations[17] (id 4242): ...``); images are read only inside the folder ``images``.

    Without ``images`` (a COCO document sent over the wire), each image names a staged blob by
    its ``sha256`` key.
    """
    if shapes not in SHAPES:
        raise InvalidInput(f"shapes: '{shapes}' is not one of {', '.join(SHAPES)}", {"field": "shapes"})
    if isinstance(annotations, (str, os.PathLike)):
        coco = load_coco(Path(annotations))
    else:  # a document already parsed (over the wire: any JSON value)
        coco = check_document(annotations, "body")
    if images is not None and not Path(images).is_dir():
        raise record_error(str(images), "no such folder (expected the folder of the COCO file's images)")
    categories: dict[Any, dict[str, Any]] = {}
    for i, cat in enumerate(coco.get("categories", [])):
        if (
            not isinstance(cat, dict)
            or "id" not in cat
            or not isinstance(cat.get("name"), str)
            or not cat["name"]
        ):
            raise record_error(f"categories[{i}]", "needs 'id' and a non-empty 'name'")
        categories[cat["id"]] = cat
    by_id: dict[Any, dict[str, Any]] = {}
    for i, img in enumerate(coco["images"]):
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            raise record_error(f"images[{i}]", "needs 'id' and 'file_name'")
        safe_name(img["file_name"], f"images[{i}].file_name")
        by_id[img["id"]] = img
    by_image: dict[Any, list[dict[str, Any]]] = {k: [] for k in by_id}
    for i, ann in enumerate(coco.get("annotations", [])):
        record = f"annotations[{i}] (id {ann.get('id')})" if isinstance(ann, dict) else f"annotations[{i}]"
        if not isinstance(ann, dict):
            raise record_error(record, "not an object")
        if ann.get("image_id") not in by_id:
            raise record_error(record, f"image_id {ann.get('image_id')!r} is not in 'images'")
        if ann.get("category_id") not in categories:
            raise record_error(record, f"category_id {ann.get('category_id')!r} is not in 'categories'")
        try:
            inst = coco_to_instance(ann, categories[ann["category_id"]], shapes)
        except (ValidationError, ValueError, TypeError, IndexError, KeyError) as exc:
            raise record_error(record, f"malformed annotation ({exc})") from exc
        img = by_id[ann["image_id"]]
        try:
            geometry.normalise(inst, img.get("width"), img.get("height"), "annotation")
        except InvalidInput as exc:
            raise record_error(record, f"{exc.message} (image '{img['file_name']}')") from exc
        by_image[ann["image_id"]].append(inst.model_dump(exclude_none=True))
    labels = [
        {
            "name": c["name"],
            "color": None,
            "spec": {k: c[k] for k in ("supercategory", "keypoints", "skeleton") if k in c},
        }
        for c in categories.values()
    ]
    return ImportSource(labels, [], _records(by_id, by_image, images), len(by_id))


def _records(
    by_id: dict[Any, dict[str, Any]],
    by_image: dict[Any, list[dict[str, Any]]],
    images: str | os.PathLike[str] | None,
) -> Iterator[dict[str, Any]]:
    for image_id, img in by_id.items():
        name = safe_name(img["file_name"])
        meta = {k: v for k, v in img.items() if k not in ("file_name", "width", "height", "id", "sha256")}
        meta["coco_id"] = image_id
        yield {
            "where": f"images (id {image_id}, '{img['file_name']}')",
            "name": name,
            "image_path": str(confine(images, name)) if images is not None else None,
            "sha256": img.get("sha256") if images is None else None,
            "metadata": meta,
            "instances": by_image[image_id],
            "width": img.get("width"),
            "height": img.get("height"),
        }
