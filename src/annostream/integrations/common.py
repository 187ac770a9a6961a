"""What the PyTorch and TensorFlow faces share, with neither framework imported.

- decoding: RGB uint8 arrays through libjpeg-turbo (``simplejpeg``) when it is installed,
  Pillow otherwise, with the same pixels either way (within one level);
- targets as numpy arrays: detection (boxes, labels, area, iscrowd, masks) and
  classification (one label id per file).

The epoch plan (which positions a rank and a worker read) is in ``plan``, and where a
process stands in the job (rank, worker) in ``world``.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from annostream.errors import AnnostreamError
from annostream.schema import SPATIAL_TYPES, Instance, Item, Sample

try:
    import simplejpeg
except ImportError:  # the optional "fast" extra
    simplejpeg = None

ImageDecode = Literal["pil", "numpy", "tensor", "bytes"] | None
Target = Literal["detection", "classification"] | Callable[[Sample], Any] | None

_JPEG_MAGIC = b"\xff\xd8\xff"


class SampleError(AnnostreamError):
    """Turning one file into a training example failed; the message names the file."""

    status = 422
    code = "bad_sample"


def decode_rgb(data: bytes) -> np.ndarray:
    """An image file's bytes as a writable RGB uint8 array [H, W, 3].

    JPEGs go through libjpeg-turbo when ``simplejpeg`` is installed (accurate DCT and
    upsampling, as Pillow does); anything it cannot read falls back to Pillow.
    """
    if simplejpeg is not None and data[:3] == _JPEG_MAGIC:
        with contextlib.suppress(ValueError):  # not a baseline JPEG simplejpeg reads: Pillow
            return simplejpeg.decode_jpeg(data, colorspace="RGB")
    return np.array(Image.open(io.BytesIO(data)).convert("RGB"))


def decode_pil(data: bytes) -> Image.Image:
    """An image file's bytes as an RGB PIL image."""
    image = Image.open(io.BytesIO(data))
    return image if image.mode == "RGB" else image.convert("RGB")


def spatial_instances(sample: Sample) -> list[Instance]:
    """The instances behind ``sample["boxes"]``, in the same order (see ``make_sample``)."""
    return [i for i in sample["instances"] if i["type"] in SPATIAL_TYPES and i["bbox"] is not None]


def _rasterise(inst: Instance, width: int, height: int) -> np.ndarray:
    """One instance as a uint8 {0, 1} mask [H, W]: polygons filled, other shapes by extent."""
    assert inst["bbox"] is not None, "spatial instances (spatial_instances) have a bbox"
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    geometry = inst.get("geometry") or {}
    if inst["type"] == "polygon":
        for ring in [geometry.get("points") or [], *(geometry.get("parts") or [])]:
            if len(ring) >= 3:
                draw.polygon([(float(p[0]), float(p[1])) for p in ring], fill=1, outline=1)
    elif inst["type"] == "ellipse":
        draw.ellipse(inst["bbox"], fill=1, outline=1)
    else:
        draw.rectangle(inst["bbox"], fill=1, outline=1)
    return np.asarray(canvas, dtype=np.uint8)


def detection_arrays(sample: Sample, masks: bool = False) -> dict[str, np.ndarray]:
    """The detection target of a sample as numpy arrays (torchvision's field names).

    ``boxes`` float32 [N, 4] xyxy pixels and ``labels`` int64 (label ids, 0 = background)
    are ``sample["boxes"]`` and ``sample["label_ids"]``; ``area`` float32 (the stored area,
    else the box's), ``iscrowd`` int64, ``image_id`` int64 (the file id) and, when asked,
    ``masks`` uint8 [N, H, W]. A file without instances gives [0, 4] boxes.
    """
    spatial = spatial_instances(sample)
    boxes = np.asarray(sample["boxes"], dtype=np.float32).reshape(-1, 4)
    box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area = np.array(
        [box_area[k] if inst.get("area") is None else inst["area"] for k, inst in enumerate(spatial)],
        dtype=np.float32,
    )
    out: dict[str, np.ndarray] = {
        "boxes": boxes,
        "labels": np.asarray(sample["label_ids"], dtype=np.int64).reshape(-1),
        "area": area.reshape(-1),
        "iscrowd": np.array([int(bool(i.get("iscrowd"))) for i in spatial], dtype=np.int64),
        "image_id": np.asarray(sample["file"]["id"], dtype=np.int64),
    }
    if masks:
        width, height = image_size(sample)
        out["masks"] = (
            np.stack([_rasterise(i, width, height) for i in spatial])
            if spatial
            else np.zeros((0, height, width), dtype=np.uint8)
        )
    return out


def image_size(sample: Sample) -> tuple[int, int]:
    """(width, height) of a sample's image, from the file record or the decoded image."""
    f = sample["file"]
    width, height = f.get("width"), f.get("height")
    if width and height:
        return int(width), int(height)
    image = sample["image"]
    if isinstance(image, Image.Image):
        return image.size
    if isinstance(image, np.ndarray):
        return image.shape[1], image.shape[0]
    raise SampleError(f"file {f['id']} ({f.get('name')}): unknown image size for masks", {"file_id": f["id"]})


def classification_label(sample: Sample) -> int:
    """One label id for the file: its tag's label, else the one label its instances share.

    A file with nothing labelled is background (0); a file whose tags, or instances, name
    more than one label cannot be one class and raises ``SampleError``.
    """
    tags = {i["label_id"] for i in sample["instances"] if i["type"] == "tag" and i["label_id"]}
    labelled = tags or {i["label_id"] for i in sample["instances"] if i["label_id"]}
    if len(labelled) > 1:
        f = sample["file"]
        names = sorted(
            {i["label"] for i in sample["instances"] if i["label"] is not None and i["label_id"] in labelled}
        )
        raise SampleError(
            f"file {f['id']} ({f.get('name')}) has labels {names}: "
            "classification needs exactly one (tag the file, or pass target=callable)",
            {"file_id": f["id"], "labels": names},
        )
    return int(next(iter(labelled), 0))


def wrap_error(sample: Sample | None, item: Item, what: str, exc: BaseException) -> SampleError:
    """A ``SampleError`` naming the file whose ``what`` step raised ``exc``."""
    f = (sample or item)["file"]
    return SampleError(
        f"{what} failed on file {f['id']} ({f.get('name')}): {type(exc).__name__}: {exc}",
        {"file_id": f["id"], "step": what},
    )
