"""Blob names: the sha256 of a blob's bytes, as 64 lowercase hex digits.

Every blob backend names blobs this way and checks a name before it becomes a path or a key,
so a name from a request can never reach outside the store. Kept apart from the backends so
that each of them can use it without importing another.
"""

from __future__ import annotations

import hashlib

_HEX = frozenset("0123456789abcdef")


def sha256_hex(data: bytes) -> str:
    """The name of a blob holding ``data``."""
    return hashlib.sha256(data).hexdigest()


def check_sha256(name: str) -> str:
    """``name`` when it is a blob name (64 lowercase hex digits); ValueError otherwise."""
    if len(name) != 64 or not _HEX.issuperset(name):
        raise ValueError(f"not a sha256: {name!r}")
    return name
