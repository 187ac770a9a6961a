"""PyTorch face of the SDK: a view as a map-style ``Dataset`` or a sharded ``IterableDataset``.

Both are picklable and hold no connection: the view's id list is fetched once in the
parent, the HTTP transport opens its pool in each DataLoader worker after fork, and the
byte cache ships empty. Items are read in batches (``items:batch``, blobs inline) with a
window of requests in flight; decoding happens in the worker.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.random  # once here: every DataLoader worker's seeding would import it again
from PIL import Image

from annostream.extras import require

try:
    import torch
except ImportError:
    require("torch", "annostream.integrations.torch")  # raises, naming the extra
    raise
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torch.utils.data import Dataset as TorchDataset

from annostream.client.sample import make_sample
from annostream.integrations.common import (
    ImageDecode,
    SampleError,
    Target,
    classification_label,
    decode_pil,
    decode_rgb,
    detection_arrays,
    wrap_error,
)
from annostream.integrations.plan import rank_positions, worker_positions
from annostream.integrations.world import Shard, distributed_rank
from annostream.schema import Item, Sample

if TYPE_CHECKING:
    from annostream.client.dataset import Dataset

__all__ = ["AnnostreamMapDataset", "AnnostreamStream", "StreamLoader", "collate_detection", "to_pytorch"]


def _in_worker() -> Any:
    """The loader worker this code runs in (None in the main process). The first time in a
    worker: the objects it inherited from its parent are left out of its garbage collections
    (``gc.freeze``). A forked worker starts with the parent's whole heap (torch, the model,
    the user's objects: ~200k objects at least), and every sample's dicts and lists would
    otherwise make the collector walk that heap again, and copy the pages it touches; that
    cost ~0.05 ms per item, a third of the SDK's own cost per item, in a fresh worker."""
    info = get_worker_info()
    if info is not None and _frozen_in[0] != os.getpid():
        gc.freeze()
        _frozen_in[0] = os.getpid()
    return info


_frozen_in = [-1]  # the pid that froze its inherited objects


def _rgb_tensor(data: bytes) -> torch.Tensor:
    """Bytes as a uint8 tensor [3, H, W]."""
    return torch.from_numpy(decode_rgb(data)).permute(2, 0, 1).contiguous()


def to_float_image(image: Any) -> Any:
    """PIL images, HWC uint8 arrays and uint8 tensors as float32 [C, H, W] in [0, 1].

    Float tensors and raw bytes pass unchanged (the latter for decoding on the GPU).
    """
    if isinstance(image, Image.Image):
        image = np.array(image if image.mode == "RGB" else image.convert("RGB"))
    if isinstance(image, np.ndarray):
        array = image if image.ndim == 3 else image[:, :, None]
        tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
        return tensor.float().div_(255.0) if array.dtype == np.uint8 else tensor.float()
    if isinstance(image, torch.Tensor) and image.dtype == torch.uint8:
        return image.float().div_(255.0)
    return image


class Pipeline:
    """(item, blob) -> training example: decode, target, transforms. Picklable.

    With ``target=None`` the example is the sample dict and ``transform`` receives it whole
    (as Diffgram's ``to_pytorch`` does). With a target the example is ``(image, target)``:
    ``transform`` receives the image, ``transforms`` the pair (torchvision's convention),
    and the image ends as a float tensor [C, H, W] in [0, 1] unless a transform made it one.
    """

    def __init__(
        self,
        decode: ImageDecode = "pil",
        target: Target = None,
        transform: Callable[[Any], Any] | None = None,
        transforms: Callable[[Any, Any], tuple[Any, Any]] | None = None,
        masks: bool = False,
    ) -> None:
        if decode not in ("pil", "numpy", "tensor", "bytes", None):
            raise ValueError(f"unknown decode {decode!r}: use 'pil', 'numpy', 'tensor' or None")
        if not (target in (None, "detection", "classification") or callable(target)):
            raise ValueError(
                f"unknown target {target!r}: use 'detection', 'classification' "
                "or a callable taking the sample"
            )
        self.decode = decode
        self.target = target
        self.transform = transform
        self.transforms = transforms
        self.masks = masks
        # A detection example ends as a tensor anyway: skip PIL when nothing wants it.
        self._direct = decode == "pil" and target is not None and transform is None and transforms is None

    def _image(self, blob: bytes | None) -> Any:
        if blob is None or self.decode in (None, "bytes"):
            return blob
        if self._direct or self.decode == "numpy":
            return decode_rgb(blob)
        if self.decode == "tensor":
            return _rgb_tensor(blob)
        return decode_pil(blob)

    def _target(self, sample: Sample) -> Any:
        if self.target == "detection":
            arrays = detection_arrays(sample, self.masks)
            return {k: torch.as_tensor(v) for k, v in arrays.items()}
        if self.target == "classification":
            return classification_label(sample)
        assert callable(self.target)
        return self.target(sample)

    def __call__(self, item: Item, blob: bytes | None) -> Any:
        sample = None
        try:
            sample = make_sample(item, None, None)
            # A video's frames stream from ds.frames() / ds.clips(), not as one image.
            sample["image"] = self._image(blob) if item["file"]["type"] != "video" else None
        except Exception as exc:
            raise wrap_error(sample, item, "decoding", exc) from exc
        if self.target is None:
            if self.transform is None:
                return sample
            try:
                return self.transform(sample)
            except Exception as exc:
                raise wrap_error(sample, item, "transform", exc) from exc
        try:
            target = self._target(sample)
        except SampleError:
            raise
        except Exception as exc:
            raise wrap_error(sample, item, "target", exc) from exc
        image = sample["image"]
        try:
            if self.transform is not None:
                image = self.transform(image)
            if self.transforms is not None:
                image, target = self.transforms(image, target)
        except Exception as exc:
            raise wrap_error(sample, item, "transform", exc) from exc
        return to_float_image(image), target


def collate_detection(batch: Sequence[tuple[Any, Any]]) -> tuple[list[Any], list[Any]]:
    """Detection examples as (images, targets) lists: what torchvision detection models take."""
    images, targets = zip(*batch, strict=True) if batch else ((), ())
    return list(images), list(targets)


class AnnostreamMapDataset(TorchDataset):
    """Map-style: ``len`` and ``[i]`` over a pinned view; a DataLoader batch is one request.

    ``__getitems__`` lets a DataLoader fetch a whole batch of indices in one ``items:batch``
    call rather than one request per index.
    """

    def __init__(self, view: Dataset, pipeline: Pipeline) -> None:
        self.view = view
        self.file_ids = view.ids  # fetched here, once, before any worker starts
        self.pipeline = pipeline

    def __len__(self) -> int:
        return len(self.file_ids)

    def __getitem__(self, index: int) -> Any:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        _in_worker()
        n = len(self.file_ids)
        ids = []
        for index in indices:
            i = int(index) + n if index < 0 else int(index)
            if not 0 <= i < n:
                raise IndexError(f"index {index} out of range for a view of {n} items")
            ids.append(int(self.file_ids[i]))
        return [self.pipeline(item, blob) for item, blob in self.view.fetch_raw(ids)]


class AnnostreamStream(IterableDataset):
    """Iterable: sharded by DDP rank and loader worker, shuffled from (seed, epoch), resumable.

    Every epoch is a permutation of the view's whole id list (no shuffle buffer); each
    rank reads every ``world_size``-th entry, padded by repetition or cut (``drop_last``) so
    all ranks read the same number of items. Loader workers read ``batch_size`` chunks in
    turn, so a DataLoader with that batch size hands items out in plan order and "items
    consumed" is a position: ``state_dict`` records it and ``load_state_dict`` jumps there
    without reading anything before it. Call ``set_epoch(e)`` before each epoch, as with
    ``DistributedSampler`` (and use fresh workers, not ``persistent_workers``, so they see it).

    With DataLoader workers each worker holds its own position, so the main process does
    not know it: use torchdata's ``StatefulDataLoader``, which asks every worker for its
    ``state_dict`` and hands each its own back on ``load_state_dict`` (exact resume), or
    ``StreamLoader``. ``state_dict()`` in the main process after workers have read the
    stream raises rather than report a position it does not have.

    With ``follow=True`` the stream does not end with the view: it goes on with the files
    that are added or re-annotated after the view's revision, as they are committed (each
    read at its commit), sharded by file id across ranks and workers. ``follow_options``
    go to ``Dataset.follow`` (``idle_timeout``, ``until``, ``wait``) and say when to stop.
    """

    def __init__(
        self,
        view: Dataset,
        pipeline: Pipeline,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        batch_size: int = 1,
        rank: int | None = None,
        world_size: int | None = None,
        follow: bool = False,
        follow_options: dict[str, Any] | None = None,
    ) -> None:
        self.view = view
        self.file_ids = view.ids  # the query runs here, once, in the parent
        self.pipeline = pipeline
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.batch_size = max(1, batch_size)
        auto_rank, auto_world = distributed_rank()
        self.rank = auto_rank if rank is None else rank
        self.world_size = auto_world if world_size is None else world_size
        self.follow = follow
        self.follow_options = dict(follow_options or {})
        self.epoch = 0
        self._start = 0
        self._consumed = 0
        self._worker_start = 0  # in a loader worker: where in its own share it resumes
        # Set by a loader worker that reads this stream (shared with the workers by fork or
        # at their spawn), so the main process knows its own count is not the position.
        self._read_by_workers: Any = multiprocessing.RawValue("b", 0)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if multiprocessing.context.get_spawning_popen() is None:
            state["_read_by_workers"] = None  # shared memory travels to a starting process only
        return state

    def set_epoch(self, epoch: int) -> None:
        """Read ``epoch``'s order next; a resume position loaded for another epoch is dropped."""
        if epoch != self.epoch:
            self.epoch = epoch
            self._start = 0
            self._consumed = 0
            self._worker_start = 0

    def positions(self) -> np.ndarray:
        """View positions this rank reads in the current epoch, from its resume point on."""
        return rank_positions(
            len(self.file_ids),
            seed=self.seed,
            epoch=self.epoch,
            shuffle=self.shuffle,
            rank=self.rank,
            world_size=self.world_size,
            drop_last=self.drop_last,
        )[self._start :]

    def __len__(self) -> int:
        return len(self.positions())

    def __iter__(self) -> Iterator[Any]:
        positions = self.positions()
        info = _in_worker()
        self._consumed = 0
        if info is not None:
            if self._read_by_workers is not None:
                self._read_by_workers.value = 1
            positions = worker_positions(positions, self.batch_size, info.id, info.num_workers)[
                self._worker_start :
            ]
        elif self._read_by_workers is not None:
            self._read_by_workers.value = 0
        for item, blob in self.view.iter_raw(positions):
            example = self.pipeline(item, blob)
            self._consumed += 1  # counted before it is handed out: a snapshot after it includes it
            yield example
        if self.follow:
            yield from self._followed(info)

    def _followed(self, info: Any) -> Iterator[Any]:
        """Examples of files committed after the view's revision, this shard's share of them."""
        from annostream.client.follow import follow_raw

        shard = Shard(self.rank, self.world_size, info.id if info else 0, info.num_workers if info else 1)
        for event, item, blob in follow_raw(self.view.follow(self.view.revision, **self.follow_options)):
            if shard.owns(event["file_id"]):
                yield self.pipeline(item, blob)

    def state_dict(self) -> dict[str, Any]:
        """Where this rank stands: epoch and items consumed, plus what the plan depends on.

        In a loader worker (where ``StatefulDataLoader`` asks for it) it is that worker's
        position in its own share. In the main process after workers have read the stream
        it raises: only the workers know how far they got.
        """
        info = get_worker_info()
        if info is not None:
            return {
                **self._plan(),
                "start": self._start,
                "worker": info.id,
                "num_workers": info.num_workers,
                "chunk": self.batch_size,
                "worker_position": self._worker_start + self._consumed,
            }
        if self._read_by_workers is not None and self._read_by_workers.value:
            raise RuntimeError(
                "DataLoader workers read this stream, so the main process does not know the position "
                "(each worker holds its own): use torchdata's StatefulDataLoader "
                "(from torchdata.stateful_dataloader import StatefulDataLoader; loader.state_dict() / "
                "load_state_dict()) or annostream's StreamLoader, and save the loader's state_dict"
            )
        return self._main_state()

    def _plan(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
            "world_size": self.world_size,
            "rank": self.rank,
            "n": len(self.file_ids),
        }

    def _main_state(self) -> dict[str, Any]:
        """The position counted in this process (valid when this process does the reading)."""
        return {**self._plan(), "position": self._start + self._consumed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``: the next iteration starts at its position, in O(1).

        A worker's state (from ``StatefulDataLoader``) is loaded in that worker and moves
        only its own share; a rank's state moves the whole plan.
        """
        mine = {
            "seed": self.seed,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
            "world_size": self.world_size,
            "n": len(self.file_ids),
        }
        differ = {k: (state.get(k), v) for k, v in mine.items() if state.get(k) != v}
        if differ:
            raise ValueError(
                f"cannot resume: the saved plan differs from this stream's (saved, here): {differ}"
            )
        self.epoch = int(state["epoch"])
        self._consumed = 0
        if "worker" not in state:
            self._start = int(state["position"])
            self._worker_start = 0
            return
        info = get_worker_info()
        if info is None:
            raise ValueError(
                "this is one DataLoader worker's state: StatefulDataLoader.load_state_dict "
                "hands it to its worker; load the loader's state, not the stream's"
            )
        here = {"worker": info.id, "num_workers": info.num_workers, "chunk": self.batch_size}
        differ = {k: (state.get(k), v) for k, v in here.items() if state.get(k) != v}
        if differ:
            raise ValueError(
                f"cannot resume: the loader's workers differ from the saved ones (saved, here): {differ}"
            )
        self._start = int(state["start"])
        self._worker_start = int(state["worker_position"])


class StreamLoader:
    """A DataLoader over a stream that counts the items it hands out, for exact resume.

    It sets the stream's chunk size to its batch size, so batches leave the workers in plan
    order; ``state_dict()`` after k batches records k * batch_size items consumed.
    """

    def __init__(self, stream: AnnostreamStream, batch_size: int = 1, **loader_options: Any) -> None:
        if loader_options.get("persistent_workers"):
            raise ValueError("persistent workers would keep an old epoch: leave persistent_workers off")
        stream.batch_size = batch_size
        if stream.pipeline.target == "detection":
            loader_options.setdefault("collate_fn", collate_detection)
        self.stream = stream
        self.batch_size = batch_size
        self.loader = DataLoader(stream, batch_size=batch_size, **loader_options)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        remaining = len(self.stream)
        self.stream._consumed = 0
        for batch in self.loader:
            self.stream._consumed = min(self.stream._consumed + self.batch_size, remaining)
            yield batch

    def set_epoch(self, epoch: int) -> None:
        self.stream.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        return self.stream._main_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state)


def to_pytorch(
    view: Dataset,
    transform: Callable[[Any], Any] | None = None,
    target: Target = None,
    decode: ImageDecode = "pil",
    *,
    transforms: Callable[[Any, Any], tuple[Any, Any]] | None = None,
    masks: bool = False,
    iterable: bool = False,
    **stream_options: Any,
) -> AnnostreamMapDataset | AnnostreamStream:
    """``view`` as a map-style torch Dataset, or (``iterable=True``) as a sharded stream.

    ``stream_options`` (iterable only): ``shuffle``, ``seed``, ``drop_last``, ``batch_size``,
    ``rank``, ``world_size``, ``follow`` and ``follow_options``; see ``AnnostreamStream``.
    """
    pipeline = Pipeline(decode, target, transform, transforms, masks)
    if iterable:
        return AnnostreamStream(view, pipeline, **stream_options)
    if stream_options:
        raise TypeError(f"{sorted(stream_options)} apply to iterable=True (or ds.stream()) only")
    return AnnostreamMapDataset(view, pipeline)
