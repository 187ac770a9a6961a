"""Names that become paths: one place that says which are allowed and where they may lead.

A name that comes from outside (a COCO ``file_name``, a record's image path, an uploaded
file's name, an export member) is untrusted. ``safe_name`` turns it into a relative POSIX
path with no ``..``, no absolute root, no drive, no NUL or control characters, or refuses
it (InvalidInput naming the field: a 422, never a silent rewrite); ``confine`` joins a safe
name to a folder and promises the result stays inside that folder, folders that are
symlinks pointing out counting as leaving. The last part itself is not followed, so an
export replaces an existing link there instead of writing through it, while a reader
still opens a file its owner linked into the folder. Uploads, imports, exports (folders
and zips) and offline copies build every path through these two functions.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path, PurePosixPath

from annostream.errors import InvalidInput

MAX_NAME = 500
MAX_PART = 255
_HEX = frozenset("0123456789abcdef")


def is_sha256(value: object) -> bool:
    """Whether ``value`` is a sha256 as blobs are named (``store.sha``, which this module does
    not import: clients use it without the store): the only names that content-addressed
    folders (blob stores, blob caches) build paths from."""
    return isinstance(value, str) and len(value) == 64 and _HEX.issuperset(value)


def safe_name(name: object, field: str = "name") -> str:
    """``name`` as a relative POSIX path that stays below where it is joined, or 422.

    Backslashes count as separators (Windows tools write them); ``.`` parts and repeated
    slashes are dropped. Refused: empty names, absolute paths and drives, ``..`` parts,
    control characters (NUL, CR, LF...), names longer than MAX_NAME characters or with a
    part longer than MAX_PART bytes.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"{field}: a file name must be a non-empty string", {"field": field})
    if len(name) > MAX_NAME:
        raise InvalidInput(f"{field}: file name longer than {MAX_NAME} characters", {"field": field})
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise InvalidInput(f"{field}: file name {name!r} holds a control character", {"field": field})
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise InvalidInput(
            f"{field}: file name {name!r} is absolute; names must be relative to their folder",
            {"field": field},
        )
    parts = [p for p in PurePosixPath(posix).parts if p not in ("", ".")]
    if ".." in parts:
        raise InvalidInput(f"{field}: file name {name!r} climbs out of its folder ('..')", {"field": field})
    if not parts:
        raise InvalidInput(f"{field}: file name {name!r} names no file", {"field": field})
    if any(len(p.encode()) > MAX_PART for p in parts):
        raise InvalidInput(f"{field}: a part of {name!r} is longer than {MAX_PART} bytes", {"field": field})
    return "/".join(parts)


def confine(root: str | os.PathLike[str], name: object, field: str = "name") -> Path:
    """The path of ``name`` inside the folder ``root``; 422 when it would lead outside."""
    relative = safe_name(name, field)
    base = Path(root).resolve()
    joined = base / relative
    parent = joined.parent.resolve()
    if parent != base and base not in parent.parents:
        raise InvalidInput(
            f"{field}: path '{relative}' leaves its folder", {"field": field, "path": relative}
        )
    return parent / joined.name
