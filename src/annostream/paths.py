"""Names that become paths: one place that says which are allowed and where they may lead.

A name that comes from outside (a COCO ``file_name``, a record's image path, an uploaded
file's name, an export member) is untrusted. ``safe_name`` turns it into a relative POSIX
path with no ``..``, no absolute root, no drive, no NUL or control characters, or refuses
it; ``confine`` joins a safe name to a folder and promises the result stays inside that
folder. The check is lexical: a symlink the folder's owner put inside the folder is
followed (exports made with ``images="link"`` are folders of symlinks), but a name can
never climb out of the folder it was given.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from annostream.errors import InvalidInput

MAX_NAME = 500


def safe_name(name: object, field: str = "name") -> str:
    """``name`` as a relative POSIX path that stays below where it is joined, or 422.

    Backslashes count as separators (Windows tools write them); ``.`` parts and repeated
    slashes are dropped. Refused: empty names, absolute paths and drives, ``..`` parts,
    NUL and other control characters, names longer than MAX_NAME characters.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"{field}: a file name must be a non-empty string", {"field": field})
    if len(name) > MAX_NAME:
        raise InvalidInput(f"{field}: file name longer than {MAX_NAME} characters", {"field": field})
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
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
    return "/".join(parts)


def confine(root: str | os.PathLike[str], name: object, field: str = "name") -> Path:
    """The path of ``name`` inside the folder ``root``; 422 when it would lead outside."""
    return Path(root) / safe_name(name, field)
