"""Frames and clips of videos in PyTorch and TensorFlow.

The torch side reuses the image integrations' map-style dataset and sharded, resumable
stream (``annostream.integrations.torch``): a frame or clip view offers the same ``ids`` /
``fetch_raw`` / ``iter_raw`` as an image view, with unit positions for ids. Decoding happens
where the unit is read, so in each DataLoader worker, from that worker's video cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from annostream.integrations.plan import rank_positions

if TYPE_CHECKING:
    from annostream.client.frames import _Units

UnitTarget = str | Callable[[dict[str, Any]], Any] | None


class UnitPipeline:
    """sample -> example. Without a target: the sample (through ``transform``). With one:
    ``(pixels, target)``, pixels a uint8 tensor ([H, W, 3] for a frame, [T, H, W, 3] for a
    clip) through ``transform``; target "detection" gives a frame's boxes and label ids (a
    clip's: one dict per frame), a callable gets the sample."""

    def __init__(self, transform: Callable[[Any], Any] | None = None, target: UnitTarget = None) -> None:
        if not (target in (None, "detection") or callable(target)):
            raise ValueError(f"unknown target {target!r}: use 'detection' or a callable taking the sample")
        self.transform = transform
        self.target = target

    @staticmethod
    def _detection(frame: dict[str, Any]) -> dict[str, Any]:
        import torch

        return {
            "boxes": torch.as_tensor(frame["boxes"]),
            "labels": torch.as_tensor(frame["label_ids"]),
            "track_ids": torch.as_tensor(frame["track_ids"]),
        }

    def __call__(self, sample: dict[str, Any], _blob: None = None) -> Any:
        import torch

        if self.target is None:
            return self.transform(sample) if self.transform is not None else sample
        if isinstance(self.target, str):  # "detection", the one name __init__ lets through
            target = (
                [self._detection(t) for t in sample["targets"]]
                if "clip" in sample
                else self._detection(sample)
            )
        else:
            target = self.target(sample)
        pixels = torch.from_numpy(sample["clip"] if "clip" in sample else sample["image"])
        if self.transform is not None:
            pixels = self.transform(pixels)
        return pixels, target


def to_pytorch(
    units: _Units,
    transform: Callable[[Any], Any] | None = None,
    target: UnitTarget = None,
    *,
    iterable: bool = False,
    **stream_options: Any,
) -> Any:
    """Frames or clips as a map-style torch Dataset, or (``iterable=True``) a sharded stream
    (``shuffle``, ``seed``, ``drop_last``, ``batch_size``, ``rank``, ``world_size``)."""
    from annostream.integrations.torch import AnnostreamMapDataset, AnnostreamStream

    pipeline = UnitPipeline(transform, target)
    if iterable:
        if stream_options.get("follow"):
            raise ValueError("follow=True streams image files; frames and clips read a pinned view")
        return AnnostreamStream(units, pipeline, **stream_options)  # type: ignore[arg-type]
    if stream_options:
        raise TypeError(f"{sorted(stream_options)} apply to iterable=True (or .stream()) only")
    return AnnostreamMapDataset(units, pipeline)  # type: ignore[arg-type]


def _element(sample: dict[str, Any]) -> dict[str, Any]:
    if "clip" in sample:
        return {
            "clip": sample["clip"],
            "file_id": np.int64(sample["file"]["id"]),
            "frame_numbers": sample["frame_numbers"],
            "labels": np.array([len(t["label_ids"]) for t in sample["targets"]], dtype=np.int64),
        }
    return {
        "image": sample["image"],
        "file_id": np.int64(sample["file"]["id"]),
        "frame_number": np.int64(sample["frame_number"]),
        "boxes": sample["boxes"],
        "labels": sample["label_ids"],
    }


def output_signature(clips: bool) -> dict[str, Any]:
    """Element spec: a frame's ``image`` [H, W, 3], ``boxes``, ``labels`` (label ids);
    a clip's ``clip`` [T, H, W, 3], ``frame_numbers`` [T] and ``labels`` (instances per frame)."""
    import tensorflow as tf

    if clips:
        return {
            "clip": tf.TensorSpec([None, None, None, 3], tf.uint8, "clip"),
            "file_id": tf.TensorSpec([], tf.int64, "file_id"),
            "frame_numbers": tf.TensorSpec([None], tf.int64, "frame_numbers"),
            "labels": tf.TensorSpec([None], tf.int64, "labels"),
        }
    return {
        "image": tf.TensorSpec([None, None, 3], tf.uint8, "image"),
        "file_id": tf.TensorSpec([], tf.int64, "file_id"),
        "frame_number": tf.TensorSpec([], tf.int64, "frame_number"),
        "boxes": tf.TensorSpec([None, 4], tf.float32, "boxes"),
        "labels": tf.TensorSpec([None], tf.int64, "labels"),
    }


def to_tensorflow(
    units: _Units,
    *,
    shuffle: bool = False,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
) -> Any:
    """Frames or clips as a ``tf.data.Dataset``; each pass reads the next epoch's order."""
    import tensorflow as tf

    from annostream.client.frames import ClipView

    epochs = iter(range(1 << 62))

    def generate() -> Iterator[dict[str, Any]]:
        positions = rank_positions(
            len(units),
            seed=seed,
            epoch=next(epochs),
            shuffle=shuffle,
            rank=rank,
            world_size=world_size,
            drop_last=drop_last,
        )
        for sample, _ in units.iter_raw(positions):
            yield _element(sample)

    return tf.data.Dataset.from_generator(
        generate, output_signature=output_signature(isinstance(units, ClipView))
    )
