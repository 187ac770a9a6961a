"""Static export: the items of a slice, at one pinned revision, streamed through a writer.

Items are read in keyset pages (never OFFSET, never all at once), each page handed to the
format's writer, which writes as it goes; so memory stays flat whatever the slice's size.
Every page reads the same revision, so an export is consistent even while others write.
(The import side of the formats is ``service.imports``.)
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

import orjson

from annostream.formats import ExportContext, Sink, make_writer
from annostream.operations import EXPORT_MANIFEST
from annostream.schema import Item
from annostream.service.datasets import DatasetRef, resolve_revision, slice_count
from annostream.service.items import page_items
from annostream.service.labels import list_attribute_groups, list_labels
from annostream.store import Store

Progress = Callable[[int, int | None], None]

PAGE = 500
MANIFEST = EXPORT_MANIFEST


def prepare(
    store: Store, ds: DatasetRef, fmt: str, query: str | None, as_of: int | None, images: bool | str
) -> tuple[ExportContext, int]:
    """Check the request (format, query, revision) before a byte is written; pin the revision.

    Returns the writer context and the number of files the export will hold.
    """
    from annostream.formats import FORMATS

    if fmt not in FORMATS:
        from annostream.errors import InvalidInput

        raise InvalidInput(
            f"format: unsupported export format '{fmt}' (use one of {', '.join(FORMATS)})",
            {"field": "format"},
        )
    with store.engine.connect() as conn:
        rev = resolve_revision(conn, ds.project, as_of)
    count, _ = slice_count(store, ds, query, rev)
    ctx = ExportContext(
        project=ds.project.string_id,
        dataset=ds.name,
        query=query,
        revision=rev,
        labels=list_labels(store, ds.project, rev),
        attribute_groups=list_attribute_groups(store, ds.project, rev),
        images=images,
    )
    return ctx, count


def iter_items(store: Store, ds: DatasetRef, query: str | None, rev: int, page: int = PAGE) -> Iterator[Item]:
    """Every item of the slice at ``rev``, one keyset page in memory at a time."""
    after = None
    while True:
        batch, _ = page_items(store, ds, query=query, as_of=rev, after=after, limit=page)
        yield from batch
        if len(batch) < page:
            return
        after = batch[-1]["id"]


def export_slice(
    store: Store,
    ds: DatasetRef,
    fmt: str,
    sink: Sink,
    *,
    query: str | None = None,
    as_of: int | None = None,
    images: bool | str = True,
    progress: Progress | None = None,
    prepared: tuple[ExportContext, int] | None = None,
) -> dict[str, Any]:
    """Write the slice in ``fmt`` to ``sink`` and return its manifest (also written to the sink)."""
    ctx, total = prepared or prepare(store, ds, fmt, query, as_of, images)
    writer = make_writer(fmt, sink, ctx, store.blobs)
    for n, item in enumerate(iter_items(store, ds, query, ctx.revision), 1):
        writer.add(cast(dict[str, Any], item))  # the format writers still take plain dicts
        if progress:
            progress(n, total)
    counts = writer.finish()
    manifest = {"format": fmt, **ctx.provenance(), "images": ctx.images, **counts}
    sink.write(MANIFEST, [orjson.dumps(manifest, option=orjson.OPT_INDENT_2)])
    sink.close()
    return manifest


class _QueueStream:
    """A write-only stream whose writes come out of ``chunks()`` in another thread (bounded)."""

    def __init__(self, depth: int = 16) -> None:
        self.q: queue.Queue[bytes | BaseException | None] = queue.Queue(depth)
        self.buffer = bytearray()
        self.stop = threading.Event()

    def put(self, item: bytes | BaseException | None) -> None:
        """Hand one chunk over; give up (raising) once the reading side has gone away."""
        while True:
            if self.stop.is_set():
                raise ConnectionAbortedError("the export's reader went away")
            try:
                self.q.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def write(self, data: bytes) -> int:
        self.buffer += data
        if len(self.buffer) >= 1 << 16:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self.buffer:
            self.put(bytes(self.buffer))
            self.buffer.clear()


def stream_zip(run: Callable[[Sink], Any]) -> Iterator[bytes]:
    """Run an export into a zip in a worker thread; yield the zip's bytes as they are made.

    The queue is bounded, so a slow reader slows the writer down instead of filling memory.
    """
    from annostream.formats import ZipSink

    out = _QueueStream()

    def work() -> None:
        try:
            run(ZipSink(out))  # type: ignore[arg-type]
            out.flush()
            out.put(None)
        except BaseException as exc:  # handed to the reading side
            if not out.stop.is_set():
                out.put(exc)

    thread = threading.Thread(target=work, name="annostream-export", daemon=True)
    thread.start()
    try:
        while True:
            chunk = out.q.get()
            if chunk is None:
                return
            if isinstance(chunk, BaseException):
                raise chunk
            yield chunk
    finally:
        out.stop.set()
