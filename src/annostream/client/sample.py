"""From an item on the wire to a sample: the image plus columnar views of its instances."""

from __future__ import annotations

import io
from typing import Any, Literal

import numpy as np
from PIL import Image

from annostream.schema import SPATIAL_TYPES, Item, Sample

Decode = Literal["pil", "numpy", "bytes"] | None


def decode_image(data: bytes | None, decode: Decode) -> Any:
    """Bytes as a PIL image (lazy), an RGB uint8 array, or untouched (``None``/"bytes")."""
    if data is None or decode in (None, "bytes"):
        return data
    image = Image.open(io.BytesIO(data))
    if decode == "pil":
        return image
    if decode == "numpy":
        return np.asarray(image.convert("RGB"))
    raise ValueError(f"unknown decode mode {decode!r}: use 'pil', 'numpy' or None")


def make_sample(item: Item, blob: bytes | None, decode: Decode = "pil") -> Sample:
    """A sample dict: ``image``, ``file``, ``instances`` and columns.

    ``boxes`` (float32 [N, 4], xyxy pixels), ``labels`` and ``label_ids`` (int64) are aligned
    and cover every spatial instance; an item with none gives shape [0, 4], not [0].
    """
    instances = item["instances"]
    spatial = [i for i in instances if i["type"] in SPATIAL_TYPES and i["bbox"] is not None]
    attributes: dict[str, Any] = {}
    for inst in instances:
        if inst["type"] == "global":
            attributes.update(inst["attributes"])
    return {
        "image": decode_image(blob, decode),
        "file": item["file"],
        "instances": instances,
        "boxes": np.array([i["bbox"] for i in spatial], dtype=np.float32).reshape(-1, 4),
        "labels": [i["label"] for i in spatial],
        "label_ids": np.array([i["label_id"] for i in spatial], dtype=np.int64),
        "polygons": [np.array(i["geometry"]["points"], dtype=np.float32)
                     for i in instances if i["type"] == "polygon"],
        "keypoints": [np.array(i["geometry"]["points"], dtype=np.float32)
                      for i in instances if i["type"] == "keypoints"],
        "tags": [i["label"] for i in instances if i["type"] == "tag"],
        "attributes": attributes,
    }
