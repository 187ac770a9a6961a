"""Thumbnails of a project's images, made on demand and cached by (blob sha256, size).

Invariants: a size is one of ``SIZES`` (no caller chooses how big a decode is); a blob is
decoded at most once per size, however many requests or server processes ask at once, and
a thumbnail never goes stale (the cache and its locking are ``service.derived``'s).
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


def thumbnail(store: Store, cache_dir: Path, sha256: str, size: int) -> tuple[Path, bool]:
    """The cached thumbnail's path, and whether this call made it (False: it was there).

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
