"""Videos of a view as a lazy sequence of frames, or of fixed-length clips.

A unit is (file id, frame number) for a frame, (file id, first frame) for a clip. The unit
list is read once (one request) at the view's pinned revision; items come without blobs
(metadata and instances, kept per file) and frames are decoded on the client from the
video's bytes (``annostream.client.video``), fetched once per process. Reading units in
order decodes forward; units of one video read out of order seek to a keyframe.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from annostream.client.progress import waiting
from annostream.client.sample import SampleDict, make_sample
from annostream.client.video import VideoCache
from annostream.schema import Item
from annostream.service.video import events_in, interpolate_tracks, on_frame

if TYPE_CHECKING:
    from annostream.client.dataset import Dataset


def frame_target(item: dict[str, Any], frame_number: int) -> dict[str, Any]:
    """Columns of the instances on one frame: boxes [N, 4], labels, label_ids, track_ids."""
    on = cast(
        Item, {"id": item["id"], "file": item["file"], "instances": on_frame(item["instances"], frame_number)}
    )
    sample = make_sample(on, None, None)
    spatial = [i for i in sample["instances"] if i["bbox"] is not None]
    return {
        "frame_number": frame_number,
        "boxes": sample["boxes"],
        "labels": sample["labels"],
        "label_ids": sample["label_ids"],
        "instances": sample["instances"],
        "track_ids": np.array(
            [-1 if i["track_id"] is None else i["track_id"] for i in spatial if i["type"] != "tag"],
            dtype=np.int64,
        ),
    }


class _Units(ABC):
    """What frame and clip views share: the pinned view, the units, items and decoders."""

    def __init__(
        self,
        view: Dataset,
        units: np.ndarray,
        *,
        interpolate: bool = False,
        video_cache: VideoCache | None = None,
        batch_size: int = 64,
    ) -> None:
        self.view = view
        self.units = units
        self.interpolate = interpolate
        self.video_cache = video_cache or VideoCache()
        self.batch_size = batch_size
        self._items: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self.units)

    @property
    def ids(self) -> np.ndarray:
        """Unit positions 0..N-1 (what the training integrations index by)."""
        return np.arange(len(self.units), dtype=np.int64)

    @property
    def revision(self) -> int:
        return self.view.revision

    def items(self, file_ids: list[int]) -> dict[int, dict[str, Any]]:
        """Items (no blobs) of ``file_ids`` at the view's revision, read once per process."""
        missing = sorted({f for f in file_ids if f not in self._items})
        if missing:
            transport, key = self.view.project.transport, self.view.project.string_id
            for item, _ in transport.items(key, missing, self.view.revision, False):
                if self.interpolate:
                    item["instances"] = interpolate_tracks(item["instances"])
                self._items[item["id"]] = item
        return {f: self._items[f] for f in file_ids}

    def frame(self, item: dict[str, Any], k: int) -> np.ndarray:
        """Frame ``k`` of the video ``item`` as RGB uint8 [H, W, 3]."""
        file = item["file"]
        project = self.view.project
        decoder = self.video_cache.decoder(
            file, lambda: project.transport.blob(project.string_id, file["sha256"])
        )
        return decoder.frame(k)

    @abstractmethod
    def sample(self, item: dict[str, Any], k: int) -> dict[str, Any]:
        """The sample of the unit starting at frame ``k`` of the video ``item``."""

    def fetch_raw(self, positions: list[int]) -> list[tuple[dict[str, Any], None]]:
        """(sample, None) per unit position: the shape the training integrations consume."""
        units = [self.units[int(p)] for p in positions]
        found = self.items([int(u[0]) for u in units])
        return [(self.sample(found[int(u[0])], int(u[1])), None) for u in units]

    def iter_raw(self, positions: np.ndarray | None = None) -> Iterator[tuple[dict[str, Any], None]]:
        order = self.ids if positions is None else np.asarray(positions)
        for start in range(0, len(order), self.batch_size):
            yield from self.fetch_raw(order[start : start + self.batch_size].tolist())

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self.units)
        i = int(index) + n if index < 0 else int(index)
        if not 0 <= i < n:
            raise IndexError(f"index {index} out of range for {n} units")
        return self.fetch_raw([i])[0][0]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for sample, _ in self.iter_raw():
            yield sample

    def to_pytorch(
        self, transform: Any = None, target: Any = None, *, iterable: bool = False, **options: Any
    ) -> Any:
        """A torch Dataset of these units (map-style), or a sharded, resumable stream."""
        from annostream.integrations.clips import to_pytorch

        return to_pytorch(self, transform, target, iterable=iterable, **options)

    def stream(self, transform: Any = None, target: Any = None, **options: Any) -> Any:
        """``to_pytorch(iterable=True, ...)``: sharded by rank and worker, shuffled per epoch."""
        return self.to_pytorch(transform, target, iterable=True, **options)

    def to_tensorflow(self, **options: Any) -> Any:
        """These units as a ``tf.data.Dataset``; see ``annostream.integrations.clips``."""
        from annostream.integrations.clips import to_tensorflow

        return to_tensorflow(self, **options)


class FrameView(_Units):
    """``ds.frames(...)``: samples ``{image, file, frame_number, boxes, labels, label_ids,
    track_ids, instances, events}``, one per selected frame."""

    def sample(self, item: dict[str, Any], k: int) -> dict[str, Any]:
        return SampleDict(  # a dict that a notebook shows as the frame with its instances drawn
            image=self.frame(item, k),
            file=item["file"],
            events=events_in(item["instances"], k, k),
            **frame_target(item, k),
        )

    def __repr__(self) -> str:
        return f"<FrameView {len(self)} frames of {self.view!r}>"


class ClipView(_Units):
    """``ds.clips(length, stride)``: samples ``{clip [T, H, W, 3], file, start, frame_numbers,
    targets (one frame_target per frame), events (those overlapping the clip)}``."""

    def __init__(self, view: Dataset, units: np.ndarray, length: int, **options: Any) -> None:
        super().__init__(view, units, **options)
        self.length = length

    def sample(self, item: dict[str, Any], k: int) -> dict[str, Any]:
        numbers = list(range(k, k + self.length))
        return {
            "clip": np.stack([self.frame(item, n) for n in numbers]),
            "file": item["file"],
            "start": k,
            "frame_numbers": np.array(numbers, dtype=np.int64),
            "targets": [frame_target(item, n) for n in numbers],
            "events": events_in(item["instances"], numbers[0], numbers[-1]),
        }

    def __repr__(self) -> str:
        return f"<ClipView {len(self)} clips of {self.length} frames of {self.view!r}>"


def _frame_ids(view: Dataset, query: str | None, step: int) -> np.ndarray:
    project = view.project
    where = f" where {query}" if query else ""
    doing = f"{view!r}: {view._where()} is listing the frames of its videos{where}"
    rev = view.revision
    with waiting(doing, view.progress):
        pairs, _ = project.transport.frame_ids(project.string_id, view.name, view.query, query, rev, step)
    if view._explicit_ids:  # an index range of the view: its own files only
        pairs = pairs[np.isin(pairs[:, 0], view.ids)]
    return pairs


def frames(
    view: Dataset,
    query: str | None = None,
    *,
    step: int = 1,
    interpolate: bool = False,
    video_cache: VideoCache | None = None,
) -> FrameView:
    """Every ``step``-th frame of the view's videos for which the frame query holds."""
    return FrameView(view, _frame_ids(view, query, step), interpolate=interpolate, video_cache=video_cache)


def clips(
    view: Dataset,
    length: int = 16,
    stride: int = 8,
    *,
    interpolate: bool = False,
    video_cache: VideoCache | None = None,
) -> ClipView:
    """Clips of ``length`` consecutive frames, starting every ``stride`` frames, of each video
    of the view (a video shorter than ``length`` gives none)."""
    if length < 1 or stride < 1:
        raise ValueError(f"length and stride must be >= 1, got {length} and {stride}")
    pairs = _frame_ids(view, None, 1)
    starts = []
    if len(pairs):
        file_ids, counts = np.unique(pairs[:, 0], return_counts=True)
        for file_id, count in zip(file_ids.tolist(), counts.tolist(), strict=True):
            starts += [(file_id, s) for s in range(0, count - length + 1, stride)]
    units = np.array(starts, dtype=np.int64).reshape(-1, 2)
    return ClipView(view, units, length, interpolate=interpolate, video_cache=video_cache)
