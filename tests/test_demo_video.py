"""The demo video: a real mp4 made from the demo photographs, whose track follows the face."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("skimage")


def test_demo_video_track_follows_the_moving_face() -> None:
    from PIL import Image

    from annostream.client.video import VideoDecoder
    from annostream.demo import _photo_dir
    from annostream.demo_video import FACE, PATCH, build_demo_video
    from annostream.service.video import interpolate_tracks, probe_video

    data, instances = build_demo_video(n_frames=24)
    info = probe_video(data, "file", "demo.mp4")
    assert (info.frame_count, info.width, info.height) == (24, 320, 240)
    filled = interpolate_tracks(
        [
            {**i, "id": n, "bbox": list(i["geometry"].values()) if i["type"] == "box" else None}
            for n, i in enumerate(instances)
        ]
    )
    face = np.asarray(
        Image.open(_photo_dir() / "chelsea.png").convert("RGB").crop(FACE).resize(PATCH), dtype=float
    )
    decoder = VideoDecoder(data)
    for k in (5, 13, 23):
        box = next(i["bbox"] for i in filled if i.get("frame_number") == k and i["type"] == "box")
        x0, y0 = round(box[0]), round(box[1])
        seen = decoder.frame(k)[y0 : y0 + PATCH[1], x0 : x0 + PATCH[0]].astype(float)
        assert np.abs(seen - face).mean() < 12, k  # the face is where the track says (lossy coding aside)
    event = instances[-1]
    assert event["type"] == "event" and 0 < event["geometry"]["start"] < event["geometry"]["end"] < 23
