"""From an item on the wire to a sample: the image plus columnar views of its instances."""

from __future__ import annotations

import io
from typing import Any, Literal, cast

import numpy as np
from PIL import Image

from annostream.schema import SPATIAL_TYPES, Item, Sample

Decode = Literal["pil", "numpy", "bytes"] | None


class SampleDict(dict[str, Any]):
    """What ``make_sample`` returns: a plain ``dict`` in every way (keys, equality, pickling,
    collate; typed as ``schema.Sample``), that a notebook also shows as its picture with its
    instances drawn over it."""

    def _repr_html_(self) -> str:
        from annostream.client.reprs import sample_html

        return sample_html(self)

    def _repr_png_(self) -> bytes | None:
        from annostream.client.reprs import sample_png

        return sample_png(self)


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
    and cover every spatial instance; an item with none gives shape [0, 4], not [0]. A text
    file's sample also has ``text``, ``spans`` and ``relations`` (``text_sample``).
    """
    instances = item["instances"]
    spatial = [i for i in instances if i["type"] in SPATIAL_TYPES and i["bbox"] is not None]
    attributes: dict[str, Any] = {}
    for inst in instances:
        if inst["type"] == "global":
            attributes.update(inst["attributes"])
    sample = cast(
        Sample,
        SampleDict(
            {
                # A video's frames come from ds.frames() / ds.clips(); its sample here is metadata.
                "image": decode_image(blob, decode) if item["file"]["type"] != "video" else None,
                "file": item["file"],
                "instances": instances,
                "boxes": np.array([i["bbox"] for i in spatial], dtype=np.float32).reshape(-1, 4),
                "labels": [i["label"] for i in spatial],
                "label_ids": np.array([i["label_id"] for i in spatial], dtype=np.int64),
                "polygons": [
                    np.array(i["geometry"]["points"], dtype=np.float32)
                    for i in instances
                    if i["type"] == "polygon"
                ],
                "keypoints": [
                    np.array(i["geometry"]["points"], dtype=np.float32)
                    for i in instances
                    if i["type"] == "keypoints"
                ],
                "tags": [i["label"] for i in instances if i["type"] == "tag"],
                "attributes": attributes,
            }
        ),
    )
    if item["file"]["type"] == "text":
        sample["text"], sample["spans"], sample["relations"] = text_sample(item)
    return sample


def text_sample(item: Item) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """A text item's text, spans (in text order, with their strings) and relations."""
    text = item["file"]["text"] or ""
    spans = sorted(
        (
            {
                "key": i["geometry"]["key"],
                "start": i["geometry"]["start"],
                "end": i["geometry"]["end"],
                "label": i["label"],
                "text": text[i["geometry"]["start"] : i["geometry"]["end"]],
                "attributes": i["attributes"],
            }
            for i in item["instances"]
            if i["type"] == "span"
        ),
        key=lambda s: (s["start"], s["end"]),
    )
    relations = [
        {
            "label": i["label"],
            "from": i["geometry"]["from"],
            "to": i["geometry"]["to"],
            "attributes": i["attributes"],
        }
        for i in item["instances"]
        if i["type"] == "relation"
    ]
    return text, spans, relations
