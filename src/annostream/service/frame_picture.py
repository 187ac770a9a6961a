"""One frame of a stored video as a JPEG (the ``get_frame`` operation; the explorer's scrubber).

Invariants: only a blob that some video file of the project uses is decoded (the same scope
as ``get_blob``: a foreign or unknown hash is the same 404); the frame number is checked
against the probed frame count before anything is read (404 naming the count); a frame is
decoded at most once per (blob sha256, frame, size) while it is cached as derived bytes
(``service.derived``, bounded), so the reply is immutable; a video whose frames are larger than the
image pixel limit is refused (413) rather than decoded. Decoding is the SDK's own
(``client.video``: seek to the keyframe at or before the frame, decode forward), with a
small per-process cache of open decoders so scrubbing forward decodes each frame once.
"""

from __future__ import annotations

import io
import re
import threading
from typing import Any

from sqlalchemy import select

from annostream.errors import InvalidInput, NotFound, PayloadTooLarge
from annostream.limits import LIMITS
from annostream.service import derived
from annostream.service.projects import ProjectRef
from annostream.service.registry import implements
from annostream.service.video import check_frame_number
from annostream.store import Store
from annostream.store.tables import files

MEDIA_TYPE = "image/jpeg"
VIDEO_BYTES_KEPT = 256 * 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_DECODERS: Any = None
_DECODERS_GUARD = threading.Lock()


def _video_file(store: Store, ref: ProjectRef, sha256: str) -> dict[str, Any]:
    """The probed facts of a video file of this project stored as blob ``sha256``; 404 otherwise."""
    if not _SHA256.match(sha256):
        raise NotFound("no such blob", {"sha256": sha256[:80]})
    with store.engine.connect() as conn:
        row = conn.execute(
            select(files.c.id, files.c.width, files.c.height, files.c.frame_count, files.c.keyframes)
            .where(files.c.project_id == ref.id, files.c.blob_sha256 == sha256, files.c.type == "video")
            .order_by(files.c.id)
            .limit(1)
        ).first()
    if row is None or not row.frame_count:
        raise NotFound(f"no video with blob {sha256} in project '{ref.string_id}'", {"sha256": sha256})
    return {
        "id": row.id,
        "sha256": sha256,
        "width": row.width or 0,
        "height": row.height or 0,
        "frame_count": row.frame_count,
        "keyframes": list(row.keyframes or []) or None,
    }


def _decoders() -> Any:
    """The process's decoders (byte-bounded video bytes, a few open decoders), made on first use."""
    global _DECODERS
    with _DECODERS_GUARD:
        if _DECODERS is None:
            from annostream.client.video import VideoCache

            _DECODERS = VideoCache(max_bytes=VIDEO_BYTES_KEPT)
        return _DECODERS


def render_frame(store: Store, video: dict[str, Any], number: int, size: int) -> bytes:
    """Frame ``number`` of ``video`` as a JPEG at most ``size`` pixels a side."""
    from PIL import Image

    sha256 = video["sha256"]
    try:
        decoder = _decoders().decoder(video, lambda: store.blobs.get(sha256))
        rgb = decoder.frame(number)
    except NotFound:
        raise
    except Exception as exc:  # FFmpeg's errors have no common base worth naming here
        raise InvalidInput(
            f"frame {number} of this video cannot be decoded ({exc})", {"sha256": sha256}
        ) from exc
    image = Image.fromarray(rgb)
    image.thumbnail((size, size))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


@implements("get_frame")
def get_frame(
    store: Store, ref: ProjectRef, sha256: str, number: int = 0, size: int = 512
) -> derived.Picture:
    """Frame ``number`` of the project's video blob ``sha256``, at most ``size`` pixels a side."""
    video = _video_file(store, ref, sha256)
    check_frame_number(number, video["frame_count"], video["id"])
    if video["width"] * video["height"] > LIMITS.max_image_pixels:
        raise PayloadTooLarge(
            f"the video's frames are {video['width']}x{video['height']}, over the limit of "
            f"{LIMITS.max_image_pixels} pixels",
            {"limit": "ANNOSTREAM_MAX_IMAGE_PIXELS"},
        )
    data, made = derived.cached(
        derived.folder(store),
        f"{sha256}-f{number}-{size}.jpg",
        lambda: render_frame(store, video, number, size),
    )
    return derived.Picture(data, MEDIA_TYPE, f'"{sha256}-f{number}-{size}"', made)
