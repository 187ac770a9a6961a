"""TensorFlow face of the SDK: a view as a ``tf.data.Dataset`` with an explicit signature.

Each element is a dict: ``image`` uint8 [H, W, 3] (or the file's raw bytes, a string
scalar, with ``decode=None`` for decoding in the graph), ``boxes`` float32 [None, 4] xyxy
pixels, ``labels`` int64 [None] (label ids, 0 = background), ``file_id`` int64; plus
``area``, ``iscrowd`` (and ``masks`` uint8 [None, H, W] when asked) for
``target="detection"``, or ``label`` int64 for ``target="classification"``. Images and
boxes vary per file, so batch with ``ragged_batch`` or ``padded_batch``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from annostream.extras import require

try:
    import tensorflow as tf
except ImportError:
    require("tensorflow", "annostream.integrations.tensorflow")  # raises, naming the extra
    raise

from annostream.client.sample import make_sample
from annostream.integrations.common import (
    SampleError,
    classification_label,
    decode_rgb,
    detection_arrays,
    wrap_error,
)
from annostream.integrations.plan import rank_positions
from annostream.schema import Item

if TYPE_CHECKING:
    from annostream.client.dataset import Dataset

__all__ = ["output_signature", "to_tensorflow"]

TfTarget = Literal["detection", "classification"] | None


def output_signature(
    target: TfTarget = None, masks: bool = False, decode: Literal["numpy"] | None = "numpy"
) -> dict[str, tf.TensorSpec]:
    """The element spec ``to_tensorflow`` declares for these options."""
    spec = {
        "image": (
            tf.TensorSpec([None, None, 3], tf.uint8, "image")
            if decode == "numpy"
            else tf.TensorSpec([], tf.string, "image")
        ),
        "boxes": tf.TensorSpec([None, 4], tf.float32, "boxes"),
        "labels": tf.TensorSpec([None], tf.int64, "labels"),
        "file_id": tf.TensorSpec([], tf.int64, "file_id"),
    }
    if target == "detection":
        spec["area"] = tf.TensorSpec([None], tf.float32, "area")
        spec["iscrowd"] = tf.TensorSpec([None], tf.int64, "iscrowd")
        if masks:
            spec["masks"] = tf.TensorSpec([None, None, None], tf.uint8, "masks")
    elif target == "classification":
        spec["label"] = tf.TensorSpec([], tf.int64, "label")
    elif target is not None:
        raise ValueError(f"unknown target {target!r}: use 'detection', 'classification' or None")
    return spec


class _Epochs:
    """The generator tf.data calls once per pass: each call reads the next epoch's order."""

    def __init__(
        self,
        view: Dataset,
        target: TfTarget,
        masks: bool,
        decode: str | None,
        shuffle: bool,
        seed: int,
        rank: int,
        world_size: int,
        drop_last: bool,
    ) -> None:
        self.view = view
        self.n = len(view.ids)  # the query runs once, here
        self.target, self.masks, self.decode = target, masks, decode
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def positions(self, epoch: int) -> np.ndarray:
        return rank_positions(
            self.n,
            seed=self.seed,
            epoch=epoch,
            shuffle=self.shuffle,
            rank=self.rank,
            world_size=self.world_size,
            drop_last=self.drop_last,
        )

    def element(self, item: Item, blob: bytes | None) -> dict[str, Any]:
        sample = None
        out: dict[str, Any]
        try:
            if blob is None:
                raise SampleError("the file has no image")
            sample = make_sample(item, None, None)
            image = decode_rgb(blob) if self.decode == "numpy" else blob
            if self.target == "detection":
                sample["image"] = image
                arrays = detection_arrays(sample, self.masks)
                out = {k: arrays[k] for k in ("boxes", "labels", "area", "iscrowd")}
                if self.masks:
                    out["masks"] = arrays["masks"]
            else:
                out = {"boxes": sample["boxes"], "labels": sample["label_ids"]}
                if self.target == "classification":
                    out["label"] = np.int64(classification_label(sample))
        except SampleError as exc:
            if str(item["file"]["id"]) in str(exc):
                raise
            raise wrap_error(sample, item, "reading", exc) from exc
        except Exception as exc:
            raise wrap_error(sample, item, "reading", exc) from exc
        return {"image": image, "file_id": np.int64(item["id"]), **out}

    def __call__(self) -> Iterator[dict[str, Any]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        for item, blob in self.view.iter_raw(self.positions(epoch)):
            yield self.element(item, blob)


def to_tensorflow(
    view: Dataset,
    *,
    target: TfTarget = None,
    masks: bool = False,
    decode: Literal["numpy"] | None = "numpy",
    shuffle: bool = False,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
) -> tf.data.Dataset:
    """``view`` as a ``tf.data.Dataset`` of dicts (see the module docstring for the fields).

    With ``shuffle`` each pass over the dataset (each ``.repeat()``) is a new permutation of
    the whole view drawn from (seed, pass); ``rank`` / ``world_size`` read one shard with
    equal counts across shards, as the PyTorch stream does. The cardinality is known.
    """
    if decode not in ("numpy", None):
        raise ValueError(f"unknown decode {decode!r} for tensorflow: use 'numpy' or None")
    epochs = _Epochs(view, target, masks, decode, shuffle, seed, rank, world_size, drop_last)
    signature = output_signature(target, masks, decode)
    dataset = tf.data.Dataset.from_generator(epochs, output_signature=signature)
    return dataset.apply(tf.data.experimental.assert_cardinality(len(epochs.positions(0))))
