"""The demo's video: made in code with PyAV from the demo photographs, a moving tracked box.

The chelsea photo's cat face slides across the coffee photo; its box is annotated on every
8th frame (a track, keyframes only) and an event covers the frames where it crosses the
middle. The server serves the mp4's bytes; frames and clips are decoded by the client.
"""

from __future__ import annotations

import io
from fractions import Fraction
from typing import Any

import numpy as np

WIDTH, HEIGHT = 320, 240
FACE = (136, 60, 360, 270)  # the cat's face in chelsea.png (x0, y0, x1, y1)
PATCH = (96, 90)
KEY_EVERY = 8


def face_box(k: int, n_frames: int) -> list[float]:
    """Where the face is in frame ``k``: left to right, a little down, linearly."""
    t = k / max(1, n_frames - 1)
    x = 8 + t * (WIDTH - PATCH[0] - 16)
    y = 20 + t * (HEIGHT - PATCH[1] - 40)
    return [float(round(x)), float(round(y)), float(round(x) + PATCH[0]), float(round(y) + PATCH[1])]


def build_demo_video(n_frames: int = 64, fps: int = 24) -> tuple[bytes, list[dict[str, Any]]]:
    """(mp4 bytes, instances): the face's track (keyframes every 8th frame and the last) and
    a ``crossing`` event over the frames where the face covers the middle of the picture."""
    import av
    from PIL import Image

    from annostream.demo import _photo_dir

    background = Image.open(_photo_dir() / "coffee.png").convert("RGB").resize((WIDTH, HEIGHT))
    face = Image.open(_photo_dir() / "chelsea.png").convert("RGB").crop(FACE).resize(PATCH)
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.codec_context.gop_size = 16
        for k in range(n_frames):
            picture = background.copy()
            x0, y0, _, _ = face_box(k, n_frames)
            picture.paste(face, (int(x0), int(y0)))
            frame = av.VideoFrame.from_ndarray(np.asarray(picture), format="rgb24")
            frame.pts = k
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    keys = sorted({*range(0, n_frames, KEY_EVERY), n_frames - 1})
    instances: list[dict[str, Any]] = [
        {
            "type": "box",
            "label": "cat",
            "frame_number": k,
            "track_id": 1,
            "geometry": dict(zip(("x_min", "y_min", "x_max", "y_max"), face_box(k, n_frames), strict=True)),
        }
        for k in keys
    ]
    crossing = [
        k for k in range(n_frames) if face_box(k, n_frames)[0] <= WIDTH / 2 <= face_box(k, n_frames)[2]
    ]
    instances.append(
        {"type": "event", "label": "crossing", "geometry": {"start": crossing[0], "end": crossing[-1]}}
    )
    return out.getvalue(), instances
