"""Decoding video frames on the client, from the video's bytes fetched once per process.

Invariants: frame k is the k-th frame in presentation order (the stored frame numbering,
see ``annostream.service.video``). A read seeks only when it must: to the nearest keyframe
at or before k when k lies behind the decoder or past a keyframe after its position;
otherwise it decodes forward from where the decoder stands, so consecutive reads cost one
decode each. Video bytes live in a byte-bounded LRU per process (each DataLoader worker has
its own, empty after fork); a few decoders stay open, one per recently read video. Before
a fork every open decoder is closed (FFmpeg's threads must not be copied into a child half
way through anything) and reopens from its bytes on its next read.
"""

from __future__ import annotations

import bisect
import io
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from annostream.service.video import check_frame_number, frame_table

DEFAULT_VIDEO_CACHE_BYTES = 512 * 1024 * 1024
OPEN_DECODERS = 4


_LIVE: weakref.WeakSet[VideoDecoder] = weakref.WeakSet()


def _close_before_fork() -> None:
    """Close every open decoder (its FFmpeg threads with it) before a fork; each reopens on
    its next read. ``service.video`` then collects what garbage cycles still hold."""
    for decoder in list(_LIVE):
        decoder.close()


os.register_at_fork(before=_close_before_fork)


class VideoDecoder:
    """Frames of one video by number, decoded from its bytes with PyAV."""

    def __init__(self, data: bytes, keyframes: list[int] | None = None, file_id: Any = None) -> None:
        self.file_id = file_id
        self._data = data
        self._lock = threading.Lock()
        self._open()
        pts, keys = frame_table(self._container, self._stream)
        self.pts = pts
        self._index = {p: i for i, p in enumerate(pts)}
        found = sorted({0, *(self._index[p] for p in keys if p in self._index)})
        self.keyframes = sorted(set(keyframes)) if keyframes else found
        self._frames: Any = None
        self._next: int | None = None  # the frame number the open decoder yields next
        self.seeks = 0

    def _open(self) -> None:
        import av

        self._container: Any = av.open(io.BytesIO(self._data), mode="r")
        self._stream: Any = self._container.streams.video[0]
        self._frames = None
        self._next = None
        _LIVE.add(self)

    @property
    def frame_count(self) -> int:
        return len(self.pts)

    def _keyframe_at_or_before(self, k: int) -> int:
        return self.keyframes[bisect.bisect_right(self.keyframes, k) - 1]

    def _must_seek(self, k: int) -> bool:
        if self._next is None or k < self._next:
            return True
        # A keyframe in (next, k]: seeking there skips decoding the frames before it.
        return self._keyframe_at_or_before(k) > self._next

    def _seek(self, k: int) -> None:
        start = self._keyframe_at_or_before(k)
        self._container.seek(self.pts[start], stream=self._stream, backward=True, any_frame=False)
        self._frames = self._container.decode(self._stream)
        self._next = None
        self.seeks += 1

    def frame(self, k: int) -> np.ndarray:
        """Frame ``k`` as an RGB uint8 array [H, W, 3]; NotFound (404) naming the frame count."""
        check_frame_number(k, self.frame_count, self.file_id)
        with self._lock:
            return self._read(k)

    def _read(self, k: int) -> np.ndarray:
        if self._container is None:
            self._open()
        if self._must_seek(k):
            self._seek(k)
        for _ in range(2):
            for frame in self._frames:
                number = self._index.get(frame.pts)
                if number is None:
                    continue
                self._next = number + 1
                if number == k:
                    rgb: np.ndarray = frame.to_ndarray(format="rgb24")
                    return rgb
                if number > k:
                    break
            # Ran past k or off the end (a decoder that lost its place): start again at the keyframe.
            self._seek(k)
        raise RuntimeError(f"frame {k} of video {self.file_id} could not be decoded")

    def close(self) -> None:
        """Free the FFmpeg decoder (and its threads); a later read opens it again."""
        with self._lock:
            if self._container is not None:
                self._frames = self._stream = None
                self._container.close()
                self._container = None
                self._next = None
            _LIVE.discard(self)


class VideoCache:
    """Video bytes by sha256 (byte-bounded LRU) and a few open decoders, per process."""

    def __init__(
        self, max_bytes: int = DEFAULT_VIDEO_CACHE_BYTES, open_decoders: int = OPEN_DECODERS
    ) -> None:
        self.max_bytes = max_bytes
        self.open_decoders = open_decoders
        self._bytes: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._decoders: OrderedDict[str, VideoDecoder] = OrderedDict()
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self.fetches = 0

    def _after_fork(self) -> None:
        if self._pid != os.getpid():
            self._bytes, self._size, self._decoders = OrderedDict(), 0, OrderedDict()
            self._lock = threading.RLock()
            self._pid = os.getpid()

    def data(self, sha256: str, fetch: Callable[[], bytes]) -> bytes:
        """The video's bytes: from the cache, else fetched once and kept if they fit."""
        self._after_fork()
        with self._lock:
            hit = self._bytes.get(sha256)
            if hit is not None:
                self._bytes.move_to_end(sha256)
                return hit
        data = fetch()
        self.fetches += 1
        with self._lock:
            if len(data) <= self.max_bytes and sha256 not in self._bytes:
                self._bytes[sha256] = data
                self._size += len(data)
                while self._size > self.max_bytes:
                    _, old = self._bytes.popitem(last=False)
                    self._size -= len(old)
        return data

    def decoder(self, file: dict[str, Any], fetch: Callable[[], bytes]) -> VideoDecoder:
        """An open decoder for the video ``file`` (an item's file dict), reused across reads."""
        self._after_fork()
        sha = file["sha256"]
        with self._lock:
            found = self._decoders.get(sha)
            if found is not None:
                self._decoders.move_to_end(sha)
                return found
        decoder = VideoDecoder(self.data(sha, fetch), file.get("keyframes"), file.get("id"))
        with self._lock:
            self._decoders[sha] = decoder
            while len(self._decoders) > self.open_decoders:
                _, old = self._decoders.popitem(last=False)
                old.close()
        return decoder

    @property
    def size(self) -> int:
        return self._size

    def __getstate__(self) -> dict[str, Any]:
        return {"max_bytes": self.max_bytes, "open_decoders": self.open_decoders}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["max_bytes"], state["open_decoders"])  # type: ignore[misc]
