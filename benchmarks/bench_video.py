"""Video frames and clips streamed from a server, beside PyAV decoding the same file from disk.

One h264 mp4 (made in code: a window panning across a demo photograph) is uploaded to a
SQLite store served over loopback HTTP, and read three ways, each in the same run as the
local baseline (PyAV on the file on disk, same threading): sequential frames
(``ds.frames()`` against ``container.decode``), random frames (``frames[k]`` against
seek-to-keyframe-and-decode-forward on the open file), and clips of 16 frames every 8
(``ds.clips()`` against decoding each clip's frames from the file). Each figure is the
best of ``--repeat`` runs; the results go to benchmarks/results/video.json.

    PYTHONPATH=src python benchmarks/bench_video.py [--frames 600] [--width 640] [--height 360]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annostream import Project
from annostream.client.transports import EmbeddedTransport
from annostream.server.launch import running_server

RESULTS = Path(__file__).with_name("results") / "video.json"


def make_video(path: Path, n_frames: int, width: int, height: int, fps: int = 30, gop: int = 30) -> None:
    """A window panning across the astronaut photograph, h264, a keyframe every ``gop`` frames."""
    from PIL import Image

    from annostream.demo import _photo_dir

    photo = Image.open(_photo_dir() / "astronaut.png").convert("RGB").resize((width * 2, height * 2))
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.codec_context.gop_size = gop
        stream.options = {"bf": "2", "crf": "23"}
        for k in range(n_frames):
            t = k / max(1, n_frames - 1)
            x, y = int(t * width), int(abs(np.sin(t * 6)) * height)
            frame = av.VideoFrame.from_ndarray(
                np.asarray(photo.crop((x, y, x + width, y + height))), format="rgb24"
            )
            frame.pts = k
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _open(path: Path) -> tuple[object, object]:
    container = av.open(str(path))
    stream = container.streams.video[0]
    # PyAV's default threading, as annostream's decoder uses
    return container, stream


def local_sequential(path: Path) -> int:
    container, stream = _open(path)
    n = sum(1 for frame in container.decode(stream) if frame.to_ndarray(format="rgb24") is not None)
    container.close()
    return n


def local_random(path: Path, ks: list[int]) -> int:
    """Seek to the keyframe before each frame and decode forward to it (pts from a demux)."""
    container, stream = _open(path)
    pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None and p.size)
    for k in ks:
        container.seek(pts[k], stream=stream, backward=True)
        for frame in container.decode(stream):
            if frame.pts == pts[k]:
                frame.to_ndarray(format="rgb24")
                break
    container.close()
    return len(ks)


def local_clips(path: Path, starts: list[int], length: int) -> int:
    container, stream = _open(path)
    pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None and p.size)
    for start in starts:
        container.seek(pts[start], stream=stream, backward=True)
        got = []
        for frame in container.decode(stream):
            if frame.pts >= pts[start]:
                got.append(frame.to_ndarray(format="rgb24"))
            if len(got) == length:
                break
        np.stack(got)
    container.close()
    return len(starts)


def best_rate(run: Callable[[], int], repeat: int) -> float:
    """Units per second of the fastest of ``repeat`` runs (the machine may be shared)."""
    rates = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = run()
        rates.append(n / (time.perf_counter() - t0))
    return max(rates)


def measure(
    ds: object, video: Path, ks: list[int], starts: list[int], length: int, stride: int, repeat: int
) -> dict[str, float]:
    """Our three figures beside the local ones; each run makes a new view of ``ds``, so the
    video's bytes are fetched inside every measurement."""
    _ = ds.ids  # type: ignore[attr-defined]  # connected before timing

    def seq() -> int:
        return sum(1 for _ in ds.frames())  # type: ignore[attr-defined]

    def rand() -> int:
        frames = ds.frames()  # type: ignore[attr-defined]
        for k in ks:
            assert frames[k]["image"].ndim == 3
        return len(ks)

    def clips() -> int:
        return sum(1 for _ in ds.clips(length, stride))  # type: ignore[attr-defined]

    return {
        "frames/s sequential": best_rate(seq, repeat),
        "local frames/s sequential": best_rate(lambda: local_sequential(video), repeat),
        "frames/s random": best_rate(rand, repeat),
        "local frames/s random": best_rate(lambda: local_random(video, ks), repeat),
        "clips/s": best_rate(clips, repeat),
        "local clips/s": best_rate(lambda: local_clips(video, starts, length), repeat),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--random", type=int, default=120, help="random frame reads")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="annostream-bench-video-"))
    video = root / "pan.mp4"
    make_video(video, args.frames, args.width, args.height)
    local = EmbeddedTransport(root / "store")
    key = local.create_project("bench", None, False)["admin_key"]
    local.upload_file("bench", "video", video.name, video.read_bytes(), [], {})
    rng = random.Random(0)
    ks = [rng.randrange(args.frames) for _ in range(args.random)]
    length, stride = 16, 8
    starts = list(range(0, args.frames - length + 1, stride))
    print(
        f"{video.stat().st_size / 1e6:.1f} MB h264 mp4, {args.frames} frames {args.width}x{args.height}, "
        f"keyframe every 30; best of {args.repeat}"
    )

    results: dict[str, dict[str, float]] = {}
    with running_server(root / "store") as url:
        transports = {
            "http": lambda: Project("bench", key["client_id"], key["client_secret"], host=url),
            "embedded": lambda: Project("bench", host=f"file://{root / 'store'}"),
        }
        for name, connect in transports.items():
            results[name] = measure(
                connect().dataset("video"), video, ks, starts, length, stride, args.repeat
            )
    print(f"{'':>10} {'sequential frames/s':>28} {'random frames/s':>26} {'clips/s (16, stride 8)':>28}")
    for name, r in results.items():
        cells = []
        for what in ("frames/s sequential", "frames/s random", "clips/s"):
            ours, theirs = r[what], r["local " + what]
            cells.append(f"{ours:7.1f} / {theirs:7.1f} = {ours / theirs:4.2f}x")
        print(f"{name:>10} " + " ".join(f"{c:>27}" for c in cells))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"args": vars(args), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
