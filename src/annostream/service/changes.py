"""The change feed: what each commit after a cursor did to a dataset, a slice or a project.

Events come from the versioned rows themselves (nothing is logged twice): a
``dataset_files`` row created or ended after the cursor is a file added to or removed from a
dataset, an ``instances`` row created or ended is a change to that file's annotations.

For a dataset (and optionally a query) the feed reports each file at most once per commit,
judged by whether the file is in the view just before and just after the commit:
``file_added`` (it entered: uploaded, added, or now matches the query), ``file_removed``
(it left) or ``instances_changed`` (it stayed and its instances changed). A follower that
applies the events to a set of ids therefore holds exactly the view's id list at the cursor.

The cursor is a revision. Pages always hold whole commits, so resuming from the cursor a
page returned neither repeats nor skips an event. Long polling waits for a commit newer
than ``since`` by reading the project's head revision (one indexed row) every ~150 ms.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from typing import Any

from sqlalchemy import Connection, Select, null, select

from annostream.errors import BadRequest, NotFound
from annostream.schema import ChangeEvent, ChangeKind, ChangePage
from annostream.service.datasets import DatasetRef, get_dataset, slice_select
from annostream.service.projects import ProjectRef
from annostream.store import Store
from annostream.store.tables import dataset_files, datasets, files, instances
from annostream.store.versioning import head_revision

POLL_SECONDS = 0.15
MAX_WAIT_SECONDS = 60.0
KIND_ORDER = {"file_removed": 0, "file_added": 1, "instances_changed": 2}

# (rev, file_id, dataset name or None, raw kind)
_Raw = tuple[int, int, str | None, ChangeKind]


def _sources(
    ref: ProjectRef, ds: DatasetRef | None, since: int, upto: int
) -> list[tuple[ChangeKind, Select[Any]]]:
    """SELECTs of (rev, file_id, dataset name) for each kind of row change in (since, upto]."""
    member = dataset_files.join(datasets, datasets.c.id == dataset_files.c.dataset_id)
    scope = datasets.c.project_id == ref.id if ds is None else dataset_files.c.dataset_id == ds.id
    out: list[tuple[ChangeKind, Select[Any]]] = []
    membership: tuple[tuple[ChangeKind, Any], ...] = (
        ("file_added", dataset_files.c.created_rev),
        ("file_removed", dataset_files.c.deleted_rev),
    )
    for kind, col in membership:
        out.append(
            (
                kind,
                select(col.label("rev"), dataset_files.c.file_id, datasets.c.name)
                .select_from(member)
                .where(scope, col > since, col <= upto),
            )
        )
    for col in (instances.c.created_rev, instances.c.deleted_rev):
        out.append(
            (
                "instances_changed",
                select(col.label("rev"), instances.c.file_id, null().label("name"))
                .where(instances.c.project_id == ref.id, col > since, col <= upto)
                .distinct(),
            )
        )
    return out


def _collect(
    conn: Connection, ref: ProjectRef, ds: DatasetRef | None, since: int, head: int, limit: int
) -> tuple[list[_Raw], int]:
    """Raw row changes of whole commits after ``since``, about ``limit`` of them; and the
    revision the page ends at."""
    upto = head
    truncated_at: list[int] = []
    raw: list[_Raw] = []
    for kind, stmt in _sources(ref, ds, since, head):
        rows = conn.execute(stmt.order_by("rev").limit(limit + 1)).all()
        if len(rows) > limit:
            truncated_at.append(rows[-1].rev)
        raw += [(r.rev, r.file_id, r[2], kind) for r in rows]
    if truncated_at:
        first = min(r[0] for r in raw)
        upto = max(min(truncated_at) - 1, first)
        if upto == first:
            raw = [
                (r.rev, r.file_id, r[2], kind)
                for kind, stmt in _sources(ref, ds, since, upto)
                for r in conn.execute(stmt)
            ]
        raw = [r for r in raw if r[0] <= upto]
    return raw, upto


def _project_events(conn: Connection, raw: list[_Raw]) -> list[ChangeEvent]:
    """Project-wide: membership events per dataset; an instance change per file, unless the
    file itself was created in that commit (its instances came with it)."""
    created: dict[int, int] = {}
    ids = sorted({r[1] for r in raw if r[3] == "instances_changed"})
    for start in range(0, len(ids), 500):
        created.update(
            (r.id, r.created_rev)
            for r in conn.execute(
                select(files.c.id, files.c.created_rev).where(files.c.id.in_(ids[start : start + 500]))
            )
        )
    seen: set[_Raw] = set()
    events: list[ChangeEvent] = []
    for rev, file_id, dataset, kind in raw:
        if kind == "instances_changed" and created.get(file_id) == rev:
            continue
        key = (rev, file_id, dataset, kind)
        if key not in seen:
            seen.add(key)
            events.append({"rev": rev, "kind": kind, "file_id": file_id, "dataset": dataset})
    return events


def _in_view(conn: Connection, ds: DatasetRef, query: str | None, rev: int, file_ids: list[int]) -> set[int]:
    """Which of ``file_ids`` are in the view (dataset and query) at ``rev``."""
    if rev < 0:
        return set()
    found: set[int] = set()
    for start in range(0, len(file_ids), 500):
        chunk = file_ids[start : start + 500]
        stmt = slice_select(conn, ds, query, rev).where(dataset_files.c.file_id.in_(chunk))
        found.update(r[0] for r in conn.execute(stmt.order_by(None)))
    return found


def _view_events(conn: Connection, ds: DatasetRef, query: str | None, raw: list[_Raw]) -> list[ChangeEvent]:
    """Per commit and file, one event judged by view membership before and after."""
    by_rev: dict[int, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    for rev, file_id, _, raw_kind in raw:
        by_rev[rev][file_id].add(raw_kind)
    events: list[ChangeEvent] = []
    for rev in sorted(by_rev):
        touched = sorted(by_rev[rev])
        before = _in_view(conn, ds, query, rev - 1, touched)
        after = _in_view(conn, ds, query, rev, touched)
        for file_id in touched:
            was, now = file_id in before, file_id in after
            kind: ChangeKind
            if now and not was:
                kind = "file_added"
            elif was and not now:
                kind = "file_removed"
            elif was and now and "instances_changed" in by_rev[rev][file_id]:
                kind = "instances_changed"
            else:
                continue
            events.append({"rev": rev, "kind": kind, "file_id": file_id, "dataset": ds.name})
    return events


def changes(
    store: Store,
    ref: ProjectRef,
    since: int,
    *,
    dataset: str | None = None,
    query: str | None = None,
    limit: int = 1000,
) -> ChangePage:
    """One page of the feed after revision ``since``: ``{"events", "cursor", "head"}``.

    ``cursor`` is the revision to ask from next (it passes commits that did not touch the
    view). ``limit`` is soft: a single commit with more changes comes whole.
    """
    if query and not dataset:
        raise BadRequest("a query needs a dataset: a slice is scoped to its dataset", {"field": "query"})
    ds = get_dataset(store, ref, dataset) if dataset else None
    with store.engine.connect() as conn:
        head = head_revision(conn, ref.id)
        if since < 0 or since > head:
            raise NotFound(f"revision {since} does not exist (head is {head})", {"since": since})
        if since == head:
            return {"events": [], "cursor": head, "head": head}
        raw, upto = _collect(conn, ref, ds, since, head, max(1, limit))
        events = _project_events(conn, raw) if ds is None else _view_events(conn, ds, query, raw)
    events.sort(key=lambda e: (e["rev"], e["file_id"], KIND_ORDER[e["kind"]], e["dataset"] or ""))
    return {"events": events, "cursor": upto, "head": head}


def wait_for_changes(
    store: Store,
    ref: ProjectRef,
    since: int,
    wait: float,
    *,
    dataset: str | None = None,
    query: str | None = None,
    limit: int = 1000,
    sleep: Callable[[float], None] = time.sleep,
) -> ChangePage:
    """``changes``, long-polled: until there is an event or ``wait`` seconds have passed.

    Between looks it reads only the head revision; a commit that does not touch the view
    moves the cursor on and the wait goes on.
    """
    from annostream.service.labels import current_revision

    deadline = time.monotonic() + min(max(wait, 0.0), MAX_WAIT_SECONDS)
    while True:
        page = changes(store, ref, since, dataset=dataset, query=query, limit=limit)
        if page["events"] or time.monotonic() >= deadline:
            return page
        since = page["cursor"]
        while current_revision(store, ref) <= since and time.monotonic() < deadline:
            sleep(POLL_SECONDS)


async def wait_for_changes_async(
    store: Store,
    ref: ProjectRef,
    since: int,
    wait: float,
    *,
    dataset: str | None = None,
    query: str | None = None,
    limit: int = 1000,
) -> ChangePage:
    """``wait_for_changes`` for an event loop: the database work runs in worker threads and
    the waiting holds no thread at all, so many followers cost the server nothing. When the
    server shuts down (``store.closing``) the wait ends at once with the page so far."""
    import anyio
    import anyio.to_thread

    from annostream.service.labels import current_revision

    deadline = time.monotonic() + min(max(wait, 0.0), MAX_WAIT_SECONDS)
    while True:
        page = await anyio.to_thread.run_sync(
            partial(changes, store, ref, since, dataset=dataset, query=query, limit=limit)
        )
        if page["events"] or time.monotonic() >= deadline or store.closing.is_set():
            return page
        since = page["cursor"]
        while (
            await anyio.to_thread.run_sync(current_revision, store, ref) <= since
            and time.monotonic() < deadline
            and not store.closing.is_set()
        ):
            await anyio.sleep(POLL_SECONDS)
