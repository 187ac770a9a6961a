"""The store: a database (SQLAlchemy) and a blob store, opened together.

A folder is a store when it holds ``annostream.db`` or a ``store.json`` pointer. Opening a
folder that is not one creates it only when asked (``create=True``: ``annostream init``,
``project create``, ``serve --init``); otherwise the error names the nearest store below it.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from annostream.errors import NotFound
from annostream.store.blobs import BlobStore, open_blob_store
from annostream.store.db import create_db_engine, migrate

DB_FILENAME = "annostream.db"
BLOBS_DIRNAME = "blobs"
# A folder holding only this file is a pointer to an external store: {"db": URL, "blobs": URL}.
POINTER_FILENAME = "store.json"


@contextmanager
def _private_files() -> Iterator[None]:
    """Files created inside (SQLite's database, WAL and journal) readable by the owner only."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def is_store(folder: Path) -> bool:
    """Whether ``folder`` holds a store (a SQLite database or a pointer to an external one)."""
    return (folder / DB_FILENAME).is_file() or (folder / POINTER_FILENAME).is_file()


def find_store_below(root: Path, max_depth: int = 3, max_folders: int = 2000) -> Path | None:
    """The shallowest store in the folders under ``root`` (breadth first, bounded), if any."""
    level, seen = [root], 0
    for _ in range(max_depth):
        below: list[Path] = []
        for folder in level:
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
            for child in children:
                if is_store(child):
                    return child
                seen += 1
                if child.name != BLOBS_DIRNAME and seen < max_folders:
                    below.append(child)
        level = below
    return None


def no_store_message(root: Path) -> str:
    """One line for a folder that holds no store: where one is, or how to make one."""
    nearest = find_store_below(root) if root.is_dir() else None
    if nearest is not None:
        return f"no annostream store at {root}: the nearest store below it is {nearest} (use that path)"
    return (
        f"no annostream store at {root}: check the path, or create an empty store with "
        f"'annostream init --data {root}'"
    )


@dataclass
class Store:
    """Everything the service needs to reach the data."""

    engine: Engine
    blobs: BlobStore
    # Set when the process serving this store shuts down: long waits (change feed) end now.
    closing: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    # Where derived pictures (thumbnails, video frames) are cached; a temporary folder when
    # None (see service/derived.py). Only derived bytes: safe to delete.
    derived_dir: Path | None = field(default=None, repr=False, compare=False)

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        db_url: str | None = None,
        blobs_url: str | None = None,
        create: bool = True,
        statement_timeout_s: float | None = None,
        query_budget: int | None = None,
    ) -> Store:
        """Open (and migrate) a store.

        The embedded default is a folder holding ``annostream.db`` (SQLite) and ``blobs/``;
        ``db_url`` and ``blobs_url`` point elsewhere (PostgreSQL, another blob backend), and
        so does a ``store.json`` in the folder, which lets every folder-based tool (the CLI,
        ``file://`` projects, ``serve --data``) reach a PostgreSQL + S3 store unchanged.
        ``statement_timeout_s`` and ``query_budget`` bound each statement (servers set them).
        A folder the store creates is private to its owner (0700), and so is the database.
        """
        if data_dir is not None:
            root = Path(data_dir)
            pointer = root / POINTER_FILENAME
            if pointer.is_file():
                target = json.loads(pointer.read_text())
                db_url = db_url or target["db"]
                blobs_url = blobs_url or target["blobs"]
            elif not create and not (root / DB_FILENAME).exists():
                raise NotFound(no_store_message(root), {"path": str(root)})
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
            db_url = db_url or f"sqlite:///{root / DB_FILENAME}"
            blobs_url = blobs_url or str(root / BLOBS_DIRNAME)
        if db_url is None or blobs_url is None:
            raise ValueError("give a data directory, or both a database URL and a blob URL")
        engine = create_db_engine(db_url, statement_timeout_s=statement_timeout_s, query_budget=query_budget)
        with _private_files():
            migrate(engine)
        if data_dir is not None and db_url == f"sqlite:///{Path(data_dir) / DB_FILENAME}":
            os.chmod(Path(data_dir) / DB_FILENAME, 0o600)
        return cls(engine=engine, blobs=open_blob_store(blobs_url))

    def close(self) -> None:
        self.engine.dispose()
