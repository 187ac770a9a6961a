"""Thumbnails of a project's images, made on demand and cached by (blob sha256, size).

Invariants: a size is one of ``SIZES`` (no caller chooses how big a decode is); while its
thumbnail is cached a blob is decoded at most once per size, however many requests or server
processes ask at once, and a thumbnail never goes stale (the cache, its bound and its
locking are ``service.derived``'s).
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from annostream.errors import InvalidInput
from annostream.service import derived
from annostream.store import Store

SIZES: tuple[int, ...] = (128, 256, 512)
MEDIA_TYPE = "image/jpeg"


def check_size(size: int) -> int:
    if size not in SIZES:
        raise InvalidInput(f"size: must be one of {list(SIZES)}", {"field": "size"})
    return size


def render(data: bytes, size: int) -> bytes:
    """A JPEG at most ``size`` pixels a side; JPEGs are decoded at a reduced scale (draft)."""
    source = Image.open(io.BytesIO(data))
    source.draft("RGB", (size, size))
    image = source.convert("RGB")
    image.thumbnail((size, size))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=82)
    return out.getvalue()


def thumbnail(store: Store, cache_dir: Path, sha256: str, size: int) -> tuple[bytes, bool]:
    """The thumbnail's JPEG bytes, and whether this call made them (False: they were cached).

    The caller has already checked that the blob is readable by whoever asked.
    """
    check_size(size)

    def make() -> bytes:
        try:
            return render(store.blobs.get(sha256), size)
        except (OSError, Image.DecompressionBombError) as exc:
            raise InvalidInput(
                f"this blob cannot be decoded as an image ({exc})", {"sha256": sha256}
            ) from exc

    return derived.cached(cache_dir, f"{sha256}-{size}.jpg", make)
