"""Names that become paths: one sanitising function and one confinement check, used by all.

Invariants: ``safe_name`` returns a non-empty relative POSIX path whose parts are never
``""``, ``.`` or ``..`` and hold no control character (NUL, CR, LF...), so joined to any
folder it stays inside it; ``confine`` returns ``root / relative`` only when that path,
symlinks resolved, lies inside ``root``. Both raise InvalidInput, never write anything.
Uploads, exports (folders and zips) and offline copies build every path through them.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from annostream.errors import InvalidInput

MAX_NAME = 500
MAX_PART = 255
_HEX = frozenset("0123456789abcdef")


def is_sha256(value: object) -> bool:
    """Whether ``value`` is a sha256 as blobs are named (``store.sha``, which this module does
    not import: clients use it without the store): the only names that content-addressed
    folders (blob stores, blob caches) build paths from."""
    return isinstance(value, str) and len(value) == 64 and _HEX.issuperset(value)


def _clean_part(part: str) -> str:
    return "".join(c for c in part if unicodedata.category(c) != "Cc").strip()


def safe_name(name: str, field: str = "name") -> str:
    """``name`` as a relative path that cannot leave its folder: backslashes read as ``/``,
    empty, ``.`` and ``..`` parts and control characters dropped, a drive prefix removed."""
    if not isinstance(name, str):
        raise InvalidInput(f"{field}: must be a string", {"field": field})
    parts = [_clean_part(p) for p in name.replace("\\", "/").split("/")]
    if parts and len(parts[0]) == 2 and parts[0][1] == ":":  # a Windows drive, C:
        parts = parts[1:]
    parts = [p for p in parts if p not in ("", ".", "..")]
    if not parts:
        raise InvalidInput(f"{field}: '{name[:100]}' names no file", {"field": field})
    if any(len(p.encode()) > MAX_PART for p in parts) or len(name) > MAX_NAME:
        raise InvalidInput(f"{field}: too long (at most {MAX_NAME} characters, {MAX_PART} bytes a part)",
                           {"field": field})
    return "/".join(parts)


def confine(root: str | os.PathLike[str], relative: str) -> Path:
    """``root / relative``, refused unless it stays inside ``root`` (``..``, absolute paths and
    folders that are symlinks pointing out all count as leaving). The last part itself is not
    followed, so an existing link there is replaced, never written through."""
    base = Path(root).resolve()
    joined = base / relative
    parent = joined.parent.resolve()
    if joined.name in ("", ".", "..") or (parent != base and base not in parent.parents):
        raise InvalidInput(f"path '{relative}' leaves its folder", {"path": str(relative)})
    return parent / joined.name
