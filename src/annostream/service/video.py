"""Videos: probing an upload, checking frame-bound annotations, interpolating tracks.

Invariants: a video's frames are numbered 0..frame_count-1 in presentation order (the pts
of its packets, sorted); ``keyframes`` lists the numbers of the frames a decoder can start
at, ascending, and always begins with 0. Frames are never stored as images: a reader
decodes them from the one stored blob (see ``annostream.client.video``). Tracks are the
instances of one file sharing a ``track_id``; linear interpolation between two annotated
keyframes of a track is computed here, the same for the server and the client.
"""

from __future__ import annotations

import gc
import io
import itertools
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from annostream.errors import InvalidInput, NotFound

# Upload names that are probed as video (the container is found from the bytes).
VIDEO_SUFFIXES: dict[str, str] = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".avi": "video/x-msvideo",
}


def _collect_before_fork() -> None:
    """PyAV objects left in garbage cycles keep FFmpeg's threads alive until collected; a
    child forked beside them (a DataLoader worker) can hang on a lock one of them held."""
    if "av" in sys.modules:
        gc.collect()


os.register_at_fork(before=_collect_before_fork)


@dataclass(frozen=True)
class VideoInfo:
    """What a probe learns about a video, all of it stored on its file row."""

    width: int
    height: int
    frame_count: int
    fps: float
    duration: float
    codec: str
    keyframes: list[int]
    content_type: str


def is_video_name(filename: str) -> bool:
    return any(filename.lower().endswith(s) for s in VIDEO_SUFFIXES)


def _av() -> Any:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is a core dependency
        raise InvalidInput("video support needs the 'av' package", {"field": "file"}) from exc
    return av


def frame_table(container: Any, stream: Any) -> tuple[list[int], set[int]]:
    """(pts of every frame in presentation order, pts of the keyframes), from demuxing only."""
    pts, keys = [], set()
    for packet in container.demux(stream):
        if packet.pts is None or packet.size == 0:
            continue
        pts.append(packet.pts)
        if packet.is_keyframe:
            keys.add(packet.pts)
    pts.sort()
    return pts, keys


def probe_video(data: bytes, where: str = "file", filename: str = "") -> VideoInfo:
    """Probe a video's bytes: demux every packet, decode the first frame; 422 with the
    decoder's reason when the bytes are not a readable video."""
    av = _av()
    suffix = next((s for s in VIDEO_SUFFIXES if filename.lower().endswith(s)), None)
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise InvalidInput(f"{where}: no video stream in '{filename}'", {"field": where})
            stream = container.streams.video[0]
            codec = stream.codec_context.name
            container_name = container.format.name
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            pts, keys = frame_table(container, stream)
            if not pts:
                raise InvalidInput(f"{where}: '{filename}' has no frames", {"field": where})
            container.seek(pts[0], stream=stream, backward=True)
            first = next(container.decode(stream))
            width, height = first.width, first.height
    except InvalidInput:
        raise
    except (av.FFmpegError, StopIteration, ValueError, OSError, EOFError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise InvalidInput(
            f"{where}: not a readable video ({reason})", {"field": where, "reason": reason}
        ) from exc
    fps = float(rate) if rate else 0.0
    index = {p: i for i, p in enumerate(pts)}
    keyframes = sorted({0, *(index[p] for p in keys if p in index)})
    duration = len(pts) / fps if fps else 0.0
    return VideoInfo(
        width=width,
        height=height,
        frame_count=len(pts),
        fps=fps,
        duration=duration,
        codec=codec,
        keyframes=keyframes,
        content_type=VIDEO_SUFFIXES[suffix] if suffix else _content_type(container_name, codec),
    )


def _content_type(container: str, codec: str) -> str:
    """A MIME type from FFmpeg's container name, for bytes that came without a file name."""
    if "mp4" in container:
        return "video/mp4"
    if "matroska" in container:
        return "video/webm" if codec in ("vp8", "vp9", "av1") else "video/x-matroska"
    return "video/x-msvideo" if container == "avi" else "application/octet-stream"


def check_frame_number(frame_number: int, frame_count: int, file_id: Any = None) -> None:
    """404 naming the frame count when ``frame_number`` is not a frame of the video."""
    if not 0 <= frame_number < frame_count:
        raise NotFound(
            f"frame {frame_number} is past the end of the video (it has {frame_count} "
            f"frames, 0..{frame_count - 1})",
            {"frame_number": frame_number, "frame_count": frame_count, "file_id": file_id},
        )


def check_instances(items: Iterable[Any], frame_count: int | None, where: str) -> None:
    """Instances on a video name frames inside it; events cover frames inside it; 422 otherwise.

    Instances on an image or a text may not name frames or tracks.
    """
    for i, inst in enumerate(items):
        at = f"{where}[{i}]"
        if frame_count is None:
            if inst.frame_number is not None or inst.type == "event":
                raise InvalidInput(f"{at}: frames and events belong to videos only", {"field": at})
            continue
        if inst.type == "event":
            end = inst.geometry.get("end")
            if isinstance(end, int) and end >= frame_count:
                raise InvalidInput(
                    f"{at}.geometry.end: frame {end} is past the end of the video ({frame_count} frames)",
                    {"field": f"{at}.geometry.end"},
                )
            continue
        if inst.type in ("span", "relation"):
            raise InvalidInput(f"{at}: a {inst.type} belongs to a text", {"field": f"{at}.type"})
        if inst.type != "global" and inst.frame_number is None:
            raise InvalidInput(
                f"{at}.frame_number: an instance on a video names its frame", {"field": f"{at}.frame_number"}
            )
        if inst.frame_number is not None and not 0 <= inst.frame_number < frame_count:
            raise InvalidInput(
                f"{at}.frame_number: frame {inst.frame_number} is past the end of the "
                f"video ({frame_count} frames)",
                {"field": f"{at}.frame_number"},
            )


# --- tracks ------------------------------------------------------------------------------


def _lerp_box(a: list[float], b: list[float], t: float) -> list[float]:
    return [x + (y - x) * t for x, y in zip(a, b, strict=True)]


def interpolate_tracks(instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The instances plus, for every track, a box at each frame strictly between two of its
    annotated keyframes that holds no instance of the track: the linear interpolation of the
    two boxes, marked ``keyframe: False`` and ``interpolated: True`` (and no id)."""
    tracks: dict[int, list[dict[str, Any]]] = {}
    for inst in instances:
        if inst.get("track_id") is not None and inst.get("frame_number") is not None:
            tracks.setdefault(inst["track_id"], []).append(inst)
    added = []
    for members in tracks.values():
        have = {m["frame_number"] for m in members}
        keys = sorted(
            (m for m in members if m["type"] == "box" and m.get("keyframe") is not False),
            key=lambda m: m["frame_number"],
        )
        for a, b in itertools.pairwise(keys):
            fa, fb = a["frame_number"], b["frame_number"]
            for k in range(fa + 1, fb):
                if k in have:
                    continue
                box = _lerp_box(a["bbox"], b["bbox"], (k - fa) / (fb - fa))
                added.append(
                    {
                        **a,
                        "id": None,
                        "frame_number": k,
                        "bbox": box,
                        "geometry": dict(zip(("x_min", "y_min", "x_max", "y_max"), box, strict=True)),
                        "area": (box[2] - box[0]) * (box[3] - box[1]),
                        "keyframe": False,
                        "interpolated": True,
                        "machine_made": True,
                    }
                )
    if not added:
        return instances
    out = instances + added
    out.sort(key=lambda m: (m.get("frame_number") is not None, m.get("frame_number") or 0))
    return out


def on_frame(instances: list[dict[str, Any]], frame_number: int) -> list[dict[str, Any]]:
    """The instances drawn on one frame (events are not: they go beside, as ranges)."""
    return [i for i in instances if i.get("frame_number") == frame_number]


def events_in(instances: list[dict[str, Any]], first: int, last: int) -> list[dict[str, Any]]:
    """Events overlapping frames ``first``..``last`` (inclusive), as {event, start, end, ...}."""
    return [
        {
            "event": i["label"],
            "start": i["geometry"]["start"],
            "end": i["geometry"]["end"],
            "attributes": i.get("attributes") or {},
        }
        for i in instances
        if i["type"] == "event" and i["geometry"]["start"] <= last and i["geometry"]["end"] >= first
    ]
