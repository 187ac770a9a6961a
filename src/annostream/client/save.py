"""``ds.snapshot().save(path)`` / ``ds.cache_to(path)``: a view, pinned, saved as a local store.

The view is read the normal way (batched, blobs inline, read ahead), so a copy can be taken
from a server or from another local store, and written through the service layer into a
folder that ``annostream.open(path)`` streams from with no server and no network.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from annostream.client.progress import ProgressArg, reporter

if TYPE_CHECKING:
    from annostream.client.dataset import Dataset


def save_view(view: Dataset, path: str | os.PathLike[str], progress: ProgressArg = None) -> Dataset:
    """Write ``view`` at its revision into the store folder ``path``; return it there."""
    from annostream.client.project import open as open_store
    from annostream.service.save import save_snapshot
    from annostream.store import Store

    pinned = view.snapshot()
    project = view.project
    rev = pinned.revision
    transport = project.transport
    target = Store.open(Path(path))
    total = len(pinned)

    def counted(report: Any) -> Iterator[Any]:
        for n, pair in enumerate(pinned.iter_raw(), 1):
            yield pair
            if report:
                report(n, total)

    try:
        with reporter(f"saving {view.name} (r{rev})", progress) as report:
            save_snapshot(
                target,
                string_id=project.string_id,
                name=project.info.get("name") or project.string_id,
                revision=rev,
                label_list=transport.labels(project.string_id, rev),
                groups=transport.attribute_groups(project.string_id, rev),
                dataset=view.name,
                items=counted(report),
            )
    finally:
        target.close()
    copy = open_store(path, project.string_id, cache_bytes=project.cache.max_bytes)
    return copy.dataset(view.name, batch_size=view.batch_size, prefetch=view.prefetch, decode=view.decode)
