"""Datasets ("directories" in Diffgram's words) and the id lists of their slices.

A slice is (dataset, query, revision). Its id list, in file-id order, is what ``len()``,
random access, sharding and shuffling are built on; it is computed by one indexed query.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Connection, Select, and_, func, insert, select

from annostream.errors import Conflict, NotFound
from annostream.schema import dataset_name
from annostream.service.projects import ProjectRef
from annostream.service.revisions import revision_readable
from annostream.store import Store
from annostream.store.db import inserted_id
from annostream.store.tables import dataset_files, files
from annostream.store.tables import datasets as datasets_table
from annostream.store.versioning import begin_commit, head_revision, visible


@dataclass(frozen=True)
class DatasetRef:
    id: int
    name: str
    project: ProjectRef


def _find(conn: Connection, ref: ProjectRef, name: str, rev: int | None) -> DatasetRef | None:
    row = conn.execute(
        select(datasets_table.c.id, datasets_table.c.name).where(
            datasets_table.c.project_id == ref.id, datasets_table.c.name == name, visible(datasets_table, rev)
        )
    ).first()
    return DatasetRef(row.id, row.name, ref) if row else None


def get_dataset(store: Store, ref: ProjectRef, name: str, as_of: int | None = None) -> DatasetRef:
    with store.engine.connect() as conn:
        found = _find(conn, ref, name, as_of)
    if found is None:
        names = [d["name"] for d in list_datasets(store, ref, as_of)]
        lowered = {n.lower(): n for n in names}
        close = [lowered[c] for c in difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)]
        hint = (
            f"; did you mean '{close[0]}'?"
            if close
            else (f"; it has {', '.join(names[:10])}" if names else "; it has no datasets")
        )
        raise NotFound(
            f"dataset '{name}' not found in project '{ref.string_id}'{hint}",
            {"dataset": name, "project": ref.string_id, "did_you_mean": close},
        )
    return found


def get_dataset_by_id(store: Store, ref: ProjectRef, dataset_id: int) -> DatasetRef:
    """A live dataset of ``ref`` by its numeric id (legacy clients address datasets by id)."""
    with store.engine.connect() as conn:
        row = conn.execute(
            select(datasets_table.c.id, datasets_table.c.name).where(
                datasets_table.c.project_id == ref.id,
                datasets_table.c.id == dataset_id,
                visible(datasets_table, None),
            )
        ).first()
    if row is None:
        raise NotFound(
            f"dataset {dataset_id} not found in project '{ref.string_id}'",
            {"dataset_id": dataset_id, "project": ref.string_id},
        )
    return DatasetRef(row.id, row.name, ref)


def default_dataset(store: Store, ref: ProjectRef) -> DatasetRef:
    """The dataset called "Default", else the oldest live one; 404 when there is none."""
    with store.engine.connect() as conn:
        row = conn.execute(
            select(datasets_table.c.id, datasets_table.c.name)
            .where(datasets_table.c.project_id == ref.id, visible(datasets_table, None))
            .order_by((datasets_table.c.name != "Default"), datasets_table.c.id)
            .limit(1)
        ).first()
    if row is None:
        raise NotFound(f"project '{ref.string_id}' has no dataset yet", {"project": ref.string_id})
    return DatasetRef(row.id, row.name, ref)


def ensure_dataset(conn: Connection, ref: ProjectRef, name: str, rev: int) -> DatasetRef:
    """The dataset called ``name``, created at ``rev`` when it does not exist yet."""
    found = _find(conn, ref, name, None)
    if found:
        return found
    name = dataset_name(name, "dataset")
    new_id = inserted_id(
        conn.execute(insert(datasets_table).values(project_id=ref.id, name=name, created_rev=rev))
    )
    return DatasetRef(new_id, name, ref)


def create_dataset(store: Store, ref: ProjectRef, name: str) -> dict[str, Any]:
    name = dataset_name(name, "name")
    with store.engine.begin() as conn:
        if _find(conn, ref, name, None):
            raise Conflict(f"dataset '{name}' already exists in project '{ref.string_id}'")
        rev = begin_commit(conn, ref.id, f"dataset {name}")
        ds = ensure_dataset(conn, ref, name, rev)
    return {"id": ds.id, "name": ds.name, "revision": rev}


def list_datasets(store: Store, ref: ProjectRef, as_of: int | None = None) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        rev = as_of if as_of is not None else head_revision(conn, ref.id)
        count = (
            select(func.count())
            .select_from(dataset_files)
            .where(dataset_files.c.dataset_id == datasets_table.c.id, visible(dataset_files, rev))
            .scalar_subquery()
        )
        rows = conn.execute(
            select(datasets_table.c.id, datasets_table.c.name, count.label("files"))
            .where(datasets_table.c.project_id == ref.id, visible(datasets_table, rev))
            .order_by(datasets_table.c.id)
        ).all()
    return [{"id": r.id, "name": r.name, "files": r.files} for r in rows]


def query_filter(
    conn: Connection,
    ds: DatasetRef,
    query: str | None,
    rev: int,
    dialect: str = "native",
    probe: bool = False,
) -> ColumnElement[bool] | None:
    """The SQL condition on ``files`` that a query text means, or None for no query
    (``probe``: compiled for reading a first page, see ``annostream.query.compile``)."""
    if query is None or not query.strip():
        return None
    from annostream.query import compile_query

    return compile_query(conn, ds, query, rev, dialect=dialect, probe=probe)  # type: ignore[arg-type]


# A first page probes at most this many files of the dataset one by one, then takes the rest
# of the slice as a set: a broad query fills its page within the window at the cost of what
# it reads; a narrow one pays at most the window before its (small) set.
PROBE_WINDOW = 4096
_NO_FILE_ID = 2**62  # past every file id


def page_conditions(
    conn: Connection, ds: DatasetRef, query: str | None, rev: int, after: int | None
) -> Iterator[ColumnElement[bool] | None]:
    """Conditions on ``files`` that read a slice's files with id > ``after`` in id order, to
    be tried in turn until a page is full: the next ``PROBE_WINDOW`` files of the dataset
    probed one by one, then the files past them as a set. Together they select the slice.

    The window's end is a subquery of the same statement (no round trip of its own; NULL
    when the dataset ends within the window, so the set then selects nothing), and the set is
    compiled only when the window did not fill the page (with the probe's vocabulary)."""
    if query is None or not query.strip():
        yield None
        return
    from annostream.query.compile import Compiler, checked_node

    node = checked_node(conn, query)
    probe = Compiler(conn, ds.project.id, rev, probe=True)
    bound = (
        select(dataset_files.c.file_id)
        .where(membership(ds, rev), dataset_files.c.file_id > (after if after is not None else -1))
        .order_by(dataset_files.c.file_id)
        .offset(PROBE_WINDOW)
        .limit(1)
        .scalar_subquery()
    )
    # On the walked index's column, so the walk stops at the window's end.
    yield and_(probe.compile(node), dataset_files.c.file_id < func.coalesce(bound, _NO_FILE_ID))
    rest = Compiler(conn, ds.project.id, rev, _vocab=probe._vocab, _datasets=probe._datasets)
    yield and_(rest.compile(node), dataset_files.c.file_id >= bound)


def slice_select(
    conn: Connection, ds: DatasetRef, query: str | None, rev: int, dialect: str = "native"
) -> Select[int]:
    """SELECT file ids of a slice at ``rev``, in file-id order."""
    stmt = (
        select(dataset_files.c.file_id)
        .join(files, files.c.id == dataset_files.c.file_id)
        .where(
            dataset_files.c.dataset_id == ds.id,
            visible(dataset_files, rev),
            visible(files, rev),
        )
    )
    condition = query_filter(conn, ds, query, rev, dialect)
    if condition is not None:
        stmt = stmt.where(condition)
    return stmt.order_by(dataset_files.c.file_id)


def resolve_revision(conn: Connection, ref: ProjectRef, as_of: int | None) -> int:
    """``as_of`` checked against the project's history, or the head revision."""
    head = head_revision(conn, ref.id)
    if as_of is None:
        return head
    if as_of < 0 or as_of > head:
        raise NotFound(f"revision {as_of} does not exist (head is {head})", {"as_of": as_of})
    if as_of < head and not revision_readable(conn, ref.id, as_of):
        raise NotFound(f"revision {as_of} was garbage collected", {"as_of": as_of})
    return as_of


def slice_ids(
    store: Store, ds: DatasetRef, query: str | None = None, as_of: int | None = None, dialect: str = "native"
) -> tuple[np.ndarray, int]:
    """(file ids as int64, revision) of a slice; one query, no per-row Python objects kept.

    ``dialect="diffgram"``: the query came from the Diffgram SDK (see ``compile_query``).
    """
    with store.engine.connect() as conn:
        rev = resolve_revision(conn, ds.project, as_of)
        result = conn.execute(slice_select(conn, ds, query, rev, dialect))
        ids = np.fromiter((r[0] for r in result), dtype=np.int64)
    return ids, rev


def slice_count(
    store: Store, ds: DatasetRef, query: str | None = None, as_of: int | None = None
) -> tuple[int, int]:
    """(number of files, revision) of a slice: summed from the per-dataset counts when the
    query is one term they answer exactly, walked from such a term's rows when it is a
    conjunction with one (``annostream.query.counts``), else counted by the scan."""
    with store.engine.connect() as conn:
        rev = resolve_revision(conn, ds.project, as_of)
        if query is not None and query.strip():
            from annostream.query.compile import checked_node
            from annostream.query.counts import driven_count, exact_count

            node = checked_node(conn, query)
            exact = exact_count(conn, ds.project.id, ds.id, node, rev)
            if exact is not None:
                return exact, rev
            driven = driven_count(conn, ds.project.id, ds.id, node, rev)
            if driven is not None:
                return int(conn.execute(driven).scalar_one()), rev
        inner = slice_select(conn, ds, query, rev).order_by(None).subquery()
        count = conn.execute(select(func.count()).select_from(inner)).scalar_one()
    return count, rev


def membership(ds: DatasetRef, rev: int) -> ColumnElement[bool]:
    """Condition: the joined file is in ``ds`` at ``rev`` (for paging queries)."""
    return and_(dataset_files.c.dataset_id == ds.id, visible(dataset_files, rev))
