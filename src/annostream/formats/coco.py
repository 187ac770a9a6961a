"""COCO writer: ``annotations.json`` (images, categories, annotations) and ``images/``.

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
joined into one JSON document at the end: memory stays flat whatever the size.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from annostream.formats import BlobSource, ExportContext, Sink, Spool, UniqueNames, put_image

ANNOTATIONS = "annotations.json"
FRAME_ID_BASE = 10_000_000


def category(label: dict[str, Any]) -> dict[str, Any]:
    """A label as a COCO category, keypoint names and skeleton included when its spec has them."""
    spec = label.get("spec") or {}
    cat: dict[str, Any] = {"id": label["id"], "name": label["name"],
                           "supercategory": spec.get("supercategory", "")}
    for key in ("keypoints", "skeleton"):
        if key in spec:
            cat[key] = spec[key]
    return cat


def _flat(points: list[list[float]]) -> list[float]:
    return [c for p in points for c in p[:2]]


def annotation(inst: dict[str, Any], image_id: int) -> dict[str, Any] | None:
    """One instance as one COCO annotation, or None when COCO has no form for its type."""
    if inst["type"] not in ("box", "polygon", "keypoints") or inst["bbox"] is None or inst["label_id"] is None:
        return None
    x0, y0, x1, y1 = inst["bbox"]
    ann: dict[str, Any] = {"id": inst["id"], "image_id": image_id, "category_id": inst["label_id"],
                           "bbox": [x0, y0, x1 - x0, y1 - y0], "area": inst["area"],
                           "iscrowd": int(inst["iscrowd"])}
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
            image = {"id": image_id, "file_name": name, "width": f["width"], "height": f["height"],
                     "video_id": f["id"], "frame_number": k}
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
        info = {"description": f"annostream export of {self.ctx.project}/{self.ctx.dataset}",
                "version": str(self.ctx.revision), "date_created": self.ctx.exported_at,
                "annostream": self.ctx.provenance()}
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
