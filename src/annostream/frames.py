"""Binary framing for items with inline blobs (``items:batch`` with ``blobs=inline``).

A response is a sequence of records, each::

    u32 little-endian  length of the item's JSON
    bytes              the item as JSON (orjson)
    u64 little-endian  length of the blob, or 2**64-1 when the item has none
    bytes              the blob

Framing (rather than base64 in JSON or multipart) lets the server stream blob bytes as
they are read and the client slice them out without copying or decoding text. ``decode``
accepts only a buffer that holds whole records: a body cut short anywhere is ``Truncated``,
never a shorter blob.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

MEDIA_TYPE = "application/x-annostream-frames"
NO_BLOB = 2**64 - 1
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class Truncated(ValueError):
    """The buffer ends inside a record (or its lengths do not add up)."""


def encode_header(item: Mapping[str, Any], blob_len: int | None) -> bytes:
    body = orjson.dumps(item)
    return _U32.pack(len(body)) + body + _U64.pack(NO_BLOB if blob_len is None else blob_len)


def decode(buffer: bytes) -> Iterator[tuple[dict[str, Any], bytes | None]]:
    """Yield (item, blob or None) from a whole framed response body; ``Truncated`` if it is not."""
    view = memoryview(buffer)
    pos, end = 0, len(buffer)
    while pos < end:
        if pos + 4 > end:
            raise Truncated(f"record length cut off at byte {pos} of {end}")
        (n,) = _U32.unpack_from(view, pos)
        pos += 4
        if pos + n + 8 > end:
            raise Truncated(f"item of {n} bytes at byte {pos} runs past the end ({end})")
        try:
            item = orjson.loads(view[pos : pos + n])
        except orjson.JSONDecodeError as exc:
            raise Truncated(f"item at byte {pos} is not JSON: {exc}") from exc
        pos += n
        (m,) = _U64.unpack_from(view, pos)
        pos += 8
        if m == NO_BLOB:
            yield item, None
        else:
            if pos + m > end:
                raise Truncated(f"blob of {m} bytes at byte {pos} runs past the end ({end})")
            yield item, bytes(view[pos : pos + m])
            pos += m
