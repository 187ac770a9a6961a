"""Writes into a user's folder that leave nothing behind when they fail.

Invariant: only what the guarded block created is removed. A folder that did not exist is
removed whole; in a folder that existed, the entries that were not there before go, and
everything that was there stays untouched.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def undone_on_failure(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Run the block that writes into ``folder``; if it raises, remove what it created."""
    folder = Path(folder)
    existed = folder.exists()
    # The first missing ancestor: removing it removes every folder the block made.
    top = folder
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    before = {p.name for p in folder.iterdir()} if existed and folder.is_dir() else set()
    try:
        yield folder
    except BaseException:
        if not existed:
            _remove(top)
        elif folder.is_dir():
            for entry in folder.iterdir():
                if entry.name not in before:
                    _remove(entry)
        raise
