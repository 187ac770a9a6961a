"""A dataset, or any slice of it, as a lazy sequence of samples.

A view is (dataset, query, revision). Nothing is fetched until it is needed: the first
``ds[0]`` or the start of an iteration on a fresh view reads a keyset page of one item and
pins the view to the revision the server read it at; an iteration goes on with keyset pages
growing eightfold until ``batch_size`` items are read (the first item costs one item, a full
pass two small requests more). ``len``, random access past those pages, and the rest of an
iteration fetch the view's id list once (compact int64, one request) at that same revision,
so every read is consistent with it.
Items then come in batches with a window of requests in flight, blobs inline in the same
response.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast, overload

import numpy as np

from annostream.client.prefetch import prefetch
from annostream.client.progress import ProgressArg, reporter, waiting
from annostream.client.sample import Decode, make_sample
from annostream.extras import require
from annostream.schema import Item, Sample

if TYPE_CHECKING:
    from annostream.client.follow import Cursor, Follow
    from annostream.client.project import Project

# What the cache charges an item beyond its blob: JSON overhead, per instance and fixed.
_ITEM_BYTES, _INSTANCE_BYTES = 512, 256


class LabelMap(Mapping[str, int]):
    """Label name -> stable contiguous id (1..N; 0 is background), and back."""

    def __init__(self, labels: list[dict[str, Any]]) -> None:
        self._by_name: dict[str, int] = {lab["name"]: lab["id"] for lab in labels}
        self.names: dict[int, str] = {lab["id"]: lab["name"] for lab in labels}
        self.specs: dict[str, dict[str, Any]] = {lab["name"]: lab.get("spec") or {} for lab in labels}

    def __getitem__(self, name: str) -> int:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def num_classes(self) -> int:
        """Classes including background: max id + 1."""
        return max(self.names, default=0) + 1

    def __repr__(self) -> str:
        return f"LabelMap({self._by_name!r})"


def explorer_base(project: Project) -> str:
    """Where ``project``'s server serves the explorer; a local store has no server."""
    host = getattr(project.transport, "host", None)
    if not isinstance(host, str) or not host.startswith(("http://", "https://")):
        raise ValueError(
            f"{project!r} is a local store with no server to show it: run "
            "`annostream serve --data <folder>` and open it over http"
        )
    return host.rstrip("/") + "/explore"


def _and(a: str | None, b: str | None) -> str | None:
    if not a or not a.strip():
        return b
    if not b or not b.strip():
        return a
    return f"({a}) and ({b})"


# A fresh view's first keyset page holds this many items; each next one this many times as
# many, up to ``batch_size`` items in all (then the id list takes over).
_FIRST_PAGE = 1
_PAGE_GROWTH = 8
# Items per ``items:batch`` request when a view streams (its ``batch_size`` by default).
BATCH = 64


class Dataset:
    """A lazy view of a dataset: ``len(ds)``, ``ds[7]``, ``ds[10:20]``, ``for s in ds``."""

    def __init__(
        self,
        project: Project,
        name: str,
        *,
        query: str | None = None,
        as_of: int | None = None,
        ids: np.ndarray | None = None,
        batch_size: int = BATCH,
        prefetch: int = 4,
        decode: Decode = "pil",
        progress: bool | None = None,
    ) -> None:
        self.project = project
        self.name = name
        self.query = query
        self._as_of = as_of
        self._ids = ids
        self._explicit_ids = ids is not None
        self._first: list[tuple[Item, bytes | None]] | None = None  # the first page, while no ids
        self.batch_size = batch_size
        self.prefetch = prefetch
        self.decode = decode
        self.progress = progress

    def __repr__(self) -> str:
        where = f", query={self.query!r}" if self.query else ""
        rev = f", as_of={self._as_of}" if self._as_of is not None else ""
        return f"<Dataset {self.project.string_id}/{self.name}{where}{rev}>"

    # --- identity of the view ------------------------------------------------------

    def _where(self) -> str:
        host = getattr(self.project.transport, "host", None)
        return f"the server at {host}" if host else "the local store"

    def _resolve(self) -> np.ndarray:
        if self._ids is None:
            doing = f"{self!r}: {self._where()} is selecting its ids (one query; the count comes with them)"
            with waiting(doing, self.progress):
                ids, rev = self.project.transport.ids(
                    self.project.string_id, self.name, self.query, self._as_of
                )
            self._ids, self._as_of = ids, rev
        return self._ids

    @property
    def ids(self) -> np.ndarray:
        """File ids of the view, in id order (int64); fetched once, then pinned."""
        return self._resolve()

    def _first_page(self) -> list[tuple[Item, bytes | None]] | None:
        """The view's first items without its id list (a fresh dataset or query view read
        without a disk cache): the first item at least, and what ``_next_page`` has added;
        None where the ids are known or wanted anyway. The first page's revision pins the
        view."""
        if self._first is None:
            if self._ids is not None or self.project.disk_cache is not None:
                return None
            self._next_page(_FIRST_PAGE)
        return self._first

    def _next_page(self, limit: int) -> None:
        """Read the keyset page of ``limit`` items after those held in ``self._first`` (at the
        pinned revision) onto them; a page shorter than asked for ends the view (its id list
        is then known)."""
        held = self._first or []
        after = held[-1][0]["id"] if held else None
        pairs, rev = self.project.transport.page(
            self.project.string_id, self.name, self.query, self._as_of, after, limit, True
        )
        self._first, self._as_of = held + cast("list[tuple[Item, bytes | None]]", pairs), rev
        if len(pairs) < limit:
            self._ids = np.array([item["id"] for item, _ in self._first], dtype=np.int64)

    @property
    def revision(self) -> int:
        """The revision this view reads (fixed at the first read)."""
        if self._first is not None:
            assert self._as_of is not None
            return self._as_of
        self._resolve()
        assert self._as_of is not None
        return self._as_of

    def derive(
        self, *, query: str | None = None, as_of: int | None = None, ids: np.ndarray | None = None
    ) -> Dataset:
        """Another view of this dataset (query, revision, optional explicit ids) read with
        this view's batch, prefetch and decode settings."""
        return Dataset(
            self.project,
            self.name,
            query=query,
            as_of=as_of,
            ids=ids,
            batch_size=self.batch_size,
            prefetch=self.prefetch,
            decode=self.decode,
            progress=self.progress,
        )

    def slice(self, query: str) -> Dataset:
        """A lazy view of the files that also match ``query`` (evaluated by the server)."""
        if self._explicit_ids:
            matching, _ = self.project.transport.ids(
                self.project.string_id, self.name, _and(self.query, query), self.revision
            )
            return self.derive(
                query=_and(self.query, query),
                as_of=self.revision,
                ids=np.intersect1d(self.ids, matching, assume_unique=True),
            )
        return self.derive(query=_and(self.query, query), as_of=self._as_of)

    def snapshot(self) -> Dataset:
        """This view pinned to the revision it reads now, whatever is written later."""
        return self.derive(query=self.query, as_of=self.revision, ids=self.ids)

    def as_of(self, revision: int | str) -> Dataset:
        """This view as it was at ``revision``: a number, or the name of a tag."""
        if isinstance(revision, str):
            revision = self.project.resolve_revision(revision)
        return self.derive(query=self.query, as_of=revision)

    def with_options(
        self,
        *,
        batch_size: int | None = None,
        prefetch: int | None = None,
        decode: Decode | str = "keep",
        progress: bool | str | None = "keep",
    ) -> Dataset:
        """The same view read with other batch, prefetch, decode or progress-bar settings."""
        view = self.derive(query=self.query, as_of=self._as_of, ids=self._ids)
        view._explicit_ids = self._explicit_ids
        view.batch_size = batch_size or self.batch_size
        view.prefetch = prefetch or self.prefetch
        if decode != "keep":
            view.decode = decode  # type: ignore[assignment]
        if progress != "keep":
            view.progress = progress  # type: ignore[assignment]
        return view

    @property
    def labels(self) -> LabelMap:
        return LabelMap(self.project.transport.labels(self.project.string_id, self.revision))

    def label_counts(self) -> dict[str, dict[str, int]]:
        """Per label name: ``files`` of the view holding it and its ``instances`` there, at the
        view's revision, counted by the store (labels unused in the view count zero). Defined
        for a dataset and its query slices; a view of picked ids (``ds[10:20]``) has none."""
        if self._explicit_ids:
            raise ValueError("label_counts counts a dataset or a query slice, not a view of picked ids")
        rev = self.revision
        with waiting(f"{self!r}: {self._where()} is counting the labels", self.progress):
            reply = self.project.transport.call(
                "label_counts", project=self.project.string_id, dataset=self.name, query=self.query, as_of=rev
            )
        return {
            row["name"]: {"files": row["files"], "instances": row["instances"]} for row in reply["labels"]
        }

    def count(self) -> int:
        """Number of files in the view, counted by the server without listing ids."""
        if self._ids is not None:
            return len(self._ids)
        with waiting(f"{self!r}: {self._where()} is counting its files", self.progress):
            n, _ = self.project.transport.count(self.project.string_id, self.name, self.query, self._as_of)
        return n

    # --- reading -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: builtins.slice) -> Dataset: ...

    def __getitem__(self, index: int | builtins.slice) -> Sample | Dataset:
        if isinstance(index, (int, np.integer)) and index >= 0:
            page = self._first_page()
            if page is not None and index < len(page):
                item, blob = page[int(index)]
                return make_sample(item, blob, self.decode)
        ids = self.ids
        if isinstance(index, builtins.slice):
            return self.derive(query=self.query, as_of=self.revision, ids=ids[index])
        if isinstance(index, (int, np.integer)):
            n = len(ids)
            i = int(index) + n if index < 0 else int(index)
            if not 0 <= i < n:
                raise IndexError(f"index {index} out of range for a view of {n} items")
            return self.fetch([int(ids[i])])[0]
        raise TypeError(f"indices must be integers or slices, not {type(index).__name__}")

    def fetch_raw(self, file_ids: list[int], *, keep: bool = True) -> list[tuple[Item, bytes | None]]:
        """(item, blob) for ``file_ids`` at this view's revision, through the byte cache.

        ``keep=False`` reads the cache without filling it (a sequential pass would only
        evict what random access put there, and hold the epoch in memory for nothing).
        """
        rev = self.revision
        cache = self.project.cache
        key = self.project.string_id
        found: dict[int, tuple[Item, bytes | None]] = {}
        missing = []
        for fid in file_ids:
            hit = cache.get((key, fid, rev))
            if hit is None:
                missing.append(fid)
            else:
                found[fid] = hit
        if missing:
            for item, blob in self._read(missing, rev):
                found[item["id"]] = (item, blob)
                if keep:
                    size = _ITEM_BYTES + _INSTANCE_BYTES * len(item["instances"]) + len(blob or b"")
                    cache.put((key, item["id"], rev), (item, blob), size)
        return [found[fid] for fid in file_ids]

    def _read(self, file_ids: list[int], rev: int) -> list[tuple[Item, bytes | None]]:
        """Items from the transport; with a disk cache, blobs it holds are not sent again.

        With a disk cache the metadata comes first (no blobs), then one request brings the
        blobs the cache lacks, which it then keeps: from the second epoch on, only metadata
        crosses the network.
        """
        key, disk = self.project.string_id, self.project.disk_cache

        def items(ids: list[int], blobs: bool) -> list[tuple[Item, bytes | None]]:
            # The transports still speak plain dicts; what they carry is the service's Item.
            return cast("list[tuple[Item, bytes | None]]", self.project.transport.items(key, ids, rev, blobs))

        if disk is None:
            return items(file_ids, True)
        pairs = [
            (item, disk.get(sha) if (sha := item["file"]["sha256"]) else None)
            for item, _ in items(file_ids, False)
        ]
        lacking = [item["id"] for item, blob in pairs if blob is None and item["file"]["sha256"]]
        if not lacking:
            return pairs
        fetched = {item["id"]: blob for item, blob in items(lacking, True)}
        for item, _ in pairs:
            sha, got = item["file"]["sha256"], fetched.get(item["id"])
            if sha and got is not None:
                disk.put(sha, got)
        return [(item, blob if blob is not None else fetched.get(item["id"])) for item, blob in pairs]

    def fetch(self, file_ids: list[int]) -> list[Sample]:
        """Samples for ``file_ids`` (any order), decoded as this view decodes."""
        return [make_sample(item, blob, self.decode) for item, blob in self.fetch_raw(file_ids)]

    def iter_raw(self, positions: np.ndarray | None = None) -> Iterator[tuple[Item, bytes | None]]:
        """(item, blob) pairs for the given positions (all, in order, by default), read ahead."""
        ids = self.ids if positions is None else self.ids[positions]
        batches = (ids[i : i + self.batch_size].tolist() for i in range(0, len(ids), self.batch_size))
        for batch in prefetch(partial(self.fetch_raw, keep=False), batches, self.prefetch):
            yield from batch

    def __iter__(self) -> Iterator[Sample]:
        done = 0
        while (page := self._first_page()) is not None and done < len(page):
            for item, blob in page[done:]:
                yield make_sample(item, blob, self.decode)
            done = len(page)
            size = min(done * _PAGE_GROWTH, self.batch_size - done)
            if self._ids is not None or size <= 0:
                break
            self._next_page(size)
        rest = np.arange(done, len(self.ids)) if done else None
        for item, blob in self.iter_raw(rest):
            yield make_sample(item, blob, self.decode)

    def export(
        self,
        path: str | os.PathLike[str],
        format: str = "json",  # noqa: A002
        *,
        images: bool | str = True,
        progress: ProgressArg = None,
    ) -> dict[str, Any]:
        """Write this view as a static export into the folder ``path``; returns its manifest.

        ``format``: json (annostream JSON Lines), coco, diffgram, yolo, yolo-seg. ``images``:
        True copies the images, False leaves them out, "link" symlinks them (embedded store).
        The server streams, the client writes as it reads: memory stays flat at any size.
        The view's query and revision are kept, so a slice or a snapshot exports as such.
        ``progress``: a bar by default (False or ``ANNOSTREAM_PROGRESS=0`` for none), or a
        callable ``(done, total)``.
        If it fails, what it wrote is removed (and the folder, if it made it).
        """
        self._check_whole("export")
        from annostream.fsguard import undone_on_failure

        with undone_on_failure(path), reporter(f"exporting {self.name} ({format})", progress) as report:
            return self.project.transport.export(
                self.project.string_id, self.name, format, Path(path), self.query, self._as_of, images, report
            )

    def _check_whole(self, what: str) -> None:
        """An index range (``ds[a:b]``) has no query to name it by: refuse to ``what`` it."""
        if self._explicit_ids:
            whole, _ = self.project.transport.count(
                self.project.string_id, self.name, self.query, self.revision
            )
            if whole != len(self.ids):
                raise ValueError(
                    f"{what} works on a dataset, a query slice or a snapshot; an index "
                    f"range (ds[a:b]) has no query to {what} it by"
                )

    # --- looking at it -------------------------------------------------------------------

    def explore(self) -> str:
        """The explorer page of this view (dataset, query, pinned revision) on its server;
        printed, and returned."""
        from urllib.parse import quote, urlencode

        self._check_whole("explore")
        base = explorer_base(self.project)
        params = urlencode(
            {k: v for k, v in (("q", self.query), ("as_of", self.revision)) if v not in (None, "")}
        )
        url = f"{base}/p/{quote(self.project.string_id, safe='')}/d/{quote(self.name)}?{params}"
        print(url)
        return url

    def _repr_html_(self) -> str:
        from annostream.client.reprs import view_html

        return view_html(self)

    def _repr_png_(self) -> bytes | None:
        from annostream.client.reprs import view_png

        return view_png(self)

    def upload_many(self, items: Any, *, progress: Any = True, duplicates: str = "skip") -> dict[str, Any]:
        """Add many images to this dataset in ONE commit (or none), with a progress bar.

        ``items``: paths, or dicts with ``path`` or ``data`` (bytes, then ``name``), and
        optional ``instances`` and ``metadata``. ``progress``: True for a bar, False for none,
        or a callable ``(done, total)``. Files already in the dataset with the same name and
        bytes are skipped (``duplicates="keep"`` adds them again).
        """
        from annostream.client.uploads import items_source, run_import

        return run_import(
            self.project.transport,
            self.project.string_id,
            self.name,
            items_source(items),
            "files",
            progress,
            duplicates,
            description="uploading",
        )

    # --- videos: frames and clips (annostream.client.frames) ------------------------------

    def frames(self, query: str | None = None, *, step: int = 1, interpolate: bool = False) -> Any:
        """The view's video frames (every ``step``-th) for which the frame query holds, as a
        lazy sequence of frame samples; ``interpolate`` adds boxes between track keyframes."""
        from annostream.client.frames import frames

        return frames(self, query, step=step, interpolate=interpolate)

    def clips(self, length: int = 16, stride: int = 8, *, interpolate: bool = False) -> Any:
        """The view's videos as clips of ``length`` frames every ``stride`` frames."""
        from annostream.client.frames import clips

        return clips(self, length, stride, interpolate=interpolate)

    # --- training frameworks (annostream.integrations, imported on first use) ------------

    def to_pytorch(
        self,
        transform: Any = None,
        target: Any = None,
        decode: Any = "pil",
        *,
        iterable: bool = False,
        **options: Any,
    ) -> Any:
        """This view as a torch Dataset (map-style), or with ``iterable=True`` a sharded,
        resumable IterableDataset; see ``annostream.integrations.torch.to_pytorch``."""
        require("torch", "to_pytorch()")
        from annostream.integrations.torch import to_pytorch

        return to_pytorch(self, transform, target, decode, iterable=iterable, **options)

    def stream(self, transform: Any = None, target: Any = None, decode: Any = "pil", **options: Any) -> Any:
        """``to_pytorch(iterable=True, ...)``: sharded by rank and worker, shuffled per epoch."""
        return self.to_pytorch(transform, target, decode, iterable=True, **options)

    def to_tensorflow(self, **options: Any) -> Any:
        """This view as a ``tf.data.Dataset``; see ``annostream.integrations.tensorflow``."""
        require("tensorflow", "to_tensorflow()")
        from annostream.integrations.tensorflow import to_tensorflow

        return to_tensorflow(self, **options)

    def to_ray(self, *, parallelism: int = -1, batch_size: int = 64) -> Any:
        """This view, pinned, as a ``ray.data.Dataset`` read by id ranges (``annostream[ray]``)."""
        require("ray", "to_ray()")
        from annostream.integrations.ray import to_ray

        return to_ray(self, parallelism=parallelism, batch_size=batch_size)

    # --- revisions: follow mode and saved copies -------------------------------------

    def follow(self, since: Cursor | int | None = None, query: str | None = None, **options: Any) -> Follow:
        """Change events of this view (and ``query``) after ``since``, in commit order.

        ``since`` defaults to the revision this view reads, so reading a view and then
        following it misses nothing; pass a previous ``follow.cursor`` to resume. Options:
        ``wait`` (long-poll seconds), ``until`` (stop at a revision), ``idle_timeout``,
        ``reconnect_for``, ``page_size``.
        """
        from annostream.client.follow import Follow

        start = self.revision if since is None else since
        return Follow(self, start, query=_and(self.query, query), **options)

    def follow_items(
        self, since: Cursor | int | None = None, query: str | None = None, **options: Any
    ) -> Iterator[Sample]:
        """Samples of files as they are added or re-annotated, each read at its commit."""
        from annostream.client.follow import follow_samples

        return follow_samples(self.follow(since, query, **options))

    def cache_to(self, path: str | os.PathLike[str], *, progress: ProgressArg = None) -> Dataset:
        """Write this view, pinned, with its blobs to a local store folder; return it there.

        ``annostream.open(path)`` then streams the same samples (ids, names, boxes, labels,
        label ids) with no server and no network. ``progress`` as for ``export``.
        """
        from annostream.client.save import save_view

        return save_view(self, path, progress)

    save = cache_to  # one operation, two public names: a saved copy (client/save.py), no cache
