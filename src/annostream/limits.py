"""Configurable bounds on what one request may cost, read from the environment once.

Every limit has a safe default; a server operator tunes them with ``ANNOSTREAM_*`` variables
(documented in docs/security.md). Invariant: each value is positive; a bad value in the
environment fails at start, never at request time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from PIL import Image


def _env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = float(raw)
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {raw!r}")
    return value


@dataclass(frozen=True)
class Limits:
    """What one request may use. ``statement_timeout_s`` applies to server processes only."""

    max_image_pixels: int
    statement_timeout_s: float
    query_budget: int
    long_polls_per_caller: int
    long_polls_per_process: int
    derived_cache_bytes: int

    @classmethod
    def from_env(cls) -> Limits:
        return cls(
            max_image_pixels=int(_env("ANNOSTREAM_MAX_IMAGE_PIXELS", 100_000_000)),
            statement_timeout_s=_env("ANNOSTREAM_STATEMENT_TIMEOUT_S", 30.0),
            query_budget=int(_env("ANNOSTREAM_QUERY_BUDGET", 64)),
            long_polls_per_caller=int(_env("ANNOSTREAM_LONG_POLLS_PER_CALLER", 8)),
            long_polls_per_process=int(_env("ANNOSTREAM_MAX_LONG_POLLS", 64)),
            derived_cache_bytes=int(_env("ANNOSTREAM_DERIVED_CACHE_BYTES", 2 * 1024**3)),
        )


LIMITS = Limits.from_env()
# Set explicitly, not left to Pillow's default: images above this are refused at upload.
Image.MAX_IMAGE_PIXELS = LIMITS.max_image_pixels
