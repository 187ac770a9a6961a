"""What the client checks before a response's items or bytes reach the caller (and the model).

Blobs are named by the sha256 of their bytes, so every blob that crosses the network is
hashed and compared with its name: a damaged or cut-short blob is ``Corrupt``, which the
retry machinery treats as a failed attempt (the batch is fetched again), never a sample.
Framed batches must also decode whole (``frames.Truncated`` otherwise) and hold every item
asked for, so a batch cut at a record boundary is caught as well. Hashing costs
about a millisecond per megabyte, small beside decoding the image.
"""

from __future__ import annotations

import hashlib
from typing import Any

from annostream import frames
from annostream.client.retry import Corrupt


def verified_blob(sha256: str | None, data: bytes) -> bytes:
    """``data`` if it hashes to ``sha256`` (``Corrupt`` otherwise)."""
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise Corrupt(f"blob {sha256} came as {len(data)} bytes that hash to something else")
    return data


def verified_frames(body: bytes, ids: list[int] | None) -> list[tuple[dict[str, Any], bytes | None]]:
    """Every (item, blob) of a framed batch asking for ``ids`` (None: a page, whose ids are not
    known before it comes), each blob checked against its item's sha256."""
    try:
        pairs = list(frames.decode(body))
    except frames.Truncated as exc:
        raise Corrupt(f"framed batch of {len(body)} bytes: {exc}") from exc
    for item, blob in pairs:
        file = item.get("file") if isinstance(item, dict) else None
        if not isinstance(file, dict):
            raise Corrupt("framed batch holds a record that is not an item")
        if (blob is None) != (file.get("sha256") is None):
            raise Corrupt(f"item {item.get('id')}: blob and sha256 disagree on whether there is a blob")
        if blob is not None:
            verified_blob(file["sha256"], blob)
    if ids is not None and sorted(item["id"] for item, _ in pairs) != sorted(set(ids)):
        raise Corrupt(f"framed batch holds {len(pairs)} items for {len(set(ids))} asked for")
    return pairs
