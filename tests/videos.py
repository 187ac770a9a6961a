"""Small real videos made in code (PyAV), each frame showing its own number as a pattern.

Frame k is black with ``BITS`` blocks along its width, block b white when bit b of k is
set: a pattern that survives lossy coding, so a test reads back which frame it got.
"""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np

BITS = 8
BLOCK = 16
WIDTH, HEIGHT = BITS * BLOCK, 32


def pattern(k: int) -> np.ndarray:
    """The RGB frame [HEIGHT, WIDTH, 3] that shows the number ``k``."""
    frame = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    for b in range(BITS):
        if k >> b & 1:
            frame[:, b * BLOCK : (b + 1) * BLOCK] = 255
    return frame


def read_number(frame: np.ndarray) -> int:
    """The number a decoded frame shows (the inverse of ``pattern``)."""
    gray = frame.mean(axis=2)
    return sum(1 << b for b in range(BITS) if gray[4:-4, b * BLOCK + 3 : (b + 1) * BLOCK - 3].mean() > 127)


CODECS = {"mp4": ("libx264", "yuv420p"), "webm": ("libvpx-vp9", "yuv420p")}


def make_video(n_frames: int, container: str = "mp4", fps: int = 25, gop: int = 12) -> bytes:
    """An encoded video of ``n_frames`` numbered frames, a keyframe every ``gop`` frames."""
    codec, pix_fmt = CODECS[container]
    out = io.BytesIO()
    with av.open(out, mode="w", format=container) as box:
        stream = box.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, pix_fmt
        stream.time_base = Fraction(1, fps)
        stream.codec_context.gop_size = gop
        if codec == "libx264":
            stream.options = {"crf": "18", "bf": "2"}
        else:
            stream.options = {"crf": "20", "b": "0", "deadline": "realtime", "cpu-used": "8"}
        for k in range(n_frames):
            frame = av.VideoFrame.from_ndarray(pattern(k), format="rgb24")
            frame.pts = k
            for packet in stream.encode(frame):
                box.mux(packet)
        for packet in stream.encode():
            box.mux(packet)
    return out.getvalue()
