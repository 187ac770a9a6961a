"""The SDK side of imports: many files as one import, an idempotency key per call, a progress bar.

``items_source`` turns what a user has at hand (paths, bytes, dicts with instances and
metadata) into import records, so ``Dataset.upload_many`` goes through the same pipeline
(and the same single commit) as every format. ``run_import`` sends a source with a fresh
idempotency key, so that a retried request after a lost reply commits once.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from annostream.formats import ImportSource

if TYPE_CHECKING:
    from annostream.client.transports import Transport

Item = str | os.PathLike[str] | dict[str, Any]
ProgressArg = bool | Callable[[int, int], None] | None


def _record(item: Item, n: int) -> dict[str, Any]:
    if not isinstance(item, dict):
        item = {"path": item}
    unknown = set(item) - {"path", "data", "name", "filename", "instances", "metadata"}
    if unknown:
        raise ValueError(
            f"item {n}: unknown keys {sorted(unknown)} (use path or data, name, instances, metadata)"
        )
    if (item.get("path") is None) == (item.get("data") is None):
        raise ValueError(f"item {n}: give exactly one of 'path' and 'data'")
    path = Path(item["path"]) if item.get("path") is not None else None
    name = item.get("name") or item.get("filename") or (path.name if path is not None else None)
    if not name:
        raise ValueError(f"item {n}: bytes need a 'name'")
    return {
        "where": f"item {n} ('{name}')",
        "name": name,
        "image_path": str(path) if path is not None else None,
        "data": item.get("data"),
        "sha256": None,
        "metadata": item.get("metadata") or {},
        "instances": item.get("instances") or [],
        "width": None,
        "height": None,
    }


def items_source(items: Iterable[Item]) -> ImportSource:
    """Paths, or dicts (``path`` or ``data``, ``name``, ``instances``, ``metadata``), as records."""
    listed = list(items)

    def records() -> Iterator[dict[str, Any]]:
        for n, item in enumerate(listed):
            yield _record(item, n)

    return ImportSource([], [], records(), len(listed))


@contextmanager
def progress_callback(progress: ProgressArg, description: str) -> Iterator[Callable[[int, int], None] | None]:
    """A callable for ``progress``: a rich bar for True, the user's own callable, or None."""
    if not progress:
        yield None
        return
    if callable(progress):
        yield progress
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
    ) as bar:
        task = bar.add_task(description, total=None)
        yield lambda n, total: bar.update(task, completed=n, total=total or None)


def run_import(
    transport: Transport,
    project: str,
    dataset: str,
    source: ImportSource,
    fmt: str,
    progress: ProgressArg,
    duplicates: str,
    description: str = "importing",
) -> dict[str, Any]:
    """Send ``source`` into ``dataset`` as one import with a new idempotency key."""
    if duplicates not in ("skip", "keep"):
        raise ValueError(f"duplicates must be 'skip' or 'keep', not {duplicates!r}")
    with progress_callback(progress, description) as callback:
        return transport.import_source(
            project, dataset, source, fmt, callback, key=uuid.uuid4().hex, duplicates=duplicates
        )
