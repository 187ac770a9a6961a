"""Per-dataset aggregates of the derived per-file tables (table ``dataset_counts``).

Invariant: for every project and every revision R >= ``projects.counts_from`` (NULL: none),
the rows visible at R are exactly, for each dataset D:

* per (label, n >= 1): how many of D's memberships (``dataset_files`` rows visible at R, of
  files visible at R) are of a file with ``file_label_counts`` count n for that label at R;
* per attribute entry (key, kind, text, number) with no text or a text shorter than
  ``AGGREGATED_TEXT_CHARS``: how many of D's memberships are of a file that carries it at R
  (``file_attribute_values``);

with no row for a zero: what a slice's count reads. Every write that changes instances,
memberships or files calls :func:`refresh_dataset_counts` once per commit with the files it
touched, after its writes (the import pipeline, whose files are all new, adds
:func:`new_files` and calls :func:`apply_counts`): the change is the touched files'
contributions after the commit (live rows) less those at the revision before it. A project
the service creates starts at ``counts_from`` 0; a store migrated to this table, or written
in bulk around the service, gets its head's state (:func:`rebuild_counts`) and
``counts_from`` = that head; earlier revisions, and projects at NULL, are counted by a scan.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, delete, insert, or_, select, text, update

from annostream.service.attribute_index import entries
from annostream.store.tables import (
    AGGREGATED_TEXT_CHARS,
    dataset_counts,
    dataset_files,
    file_attribute_values,
    file_label_counts,
    files,
    projects,
)
from annostream.store.versioning import end_rows, visible

# (dataset_id, label_id, count, key, kind, text, number): one aggregate; a label's has no
# key, an attribute entry's no label.
Key = tuple[int, int | None, int | None, str | None, str | None, str | None, float | None]
_CHUNK = 500

_LABELS = (
    "SELECT df.dataset_id, c.label_id, c.count, NULL, NULL, NULL, NULL, COUNT(*){extra}"
    " FROM dataset_files df JOIN files f ON f.id = df.file_id AND f.deleted_rev IS NULL"
    " JOIN file_label_counts c ON c.file_id = df.file_id AND c.deleted_rev IS NULL"
    " JOIN datasets d ON d.id = df.dataset_id JOIN projects p ON p.id = d.project_id"
    " WHERE df.deleted_rev IS NULL"
    " GROUP BY df.dataset_id, c.label_id, c.count{extra}"
)
_ATTRIBUTES = (
    "SELECT df.dataset_id, NULL, NULL, v.key, v.kind, v.text, v.number, COUNT(*){extra}"
    " FROM dataset_files df JOIN files f ON f.id = df.file_id AND f.deleted_rev IS NULL"
    " JOIN file_attribute_values v ON v.file_id = df.file_id AND v.deleted_rev IS NULL"
    " JOIN datasets d ON d.id = df.dataset_id JOIN projects p ON p.id = d.project_id"
    f" WHERE df.deleted_rev IS NULL AND (v.text IS NULL OR length(v.text) < {AGGREGATED_TEXT_CHARS})"
    " GROUP BY df.dataset_id, v.key, v.kind, v.text, v.number{extra}"
)
_COLUMNS = "dataset_id, label_id, count, key, kind, text, number, files"
# The head state of every dataset, set-based: what the migration writes (created at the head).
BACKFILL = [
    f"INSERT INTO dataset_counts ({_COLUMNS}, created_rev) " + q.format(extra=", p.head_rev")
    for q in (_LABELS, _ATTRIBUTES)
]


def rebuild_counts(conn: Connection) -> None:
    """Every project's aggregates rebuilt at its head, set-based (:data:`BACKFILL`), with
    ``counts_from`` moved there: what the migration does, and what a store written in bulk
    without them (a benchmark's) needs. Earlier revisions are then counted by the scan."""
    conn.execute(delete(dataset_counts))
    conn.execute(update(projects).values(counts_from=projects.c.head_rev))
    for statement in BACKFILL:
        conn.execute(text(statement))


def _aggregated(entry_text: str | None) -> bool:
    return entry_text is None or len(entry_text) < AGGREGATED_TEXT_CHARS


def _contributions(conn: Connection, file_ids: list[int], at: int | None) -> Counter[Key]:
    """What ``file_ids`` add to the aggregates at revision ``at`` (the live rows when None)."""
    out: Counter[Key] = Counter()
    df, flc, fav = dataset_files, file_label_counts, file_attribute_values
    for start in range(0, len(file_ids), _CHUNK):
        chunk = file_ids[start : start + _CHUNK]
        member: dict[int, list[int]] = defaultdict(list)
        for m in conn.execute(
            select(df.c.file_id, df.c.dataset_id)
            .join(files, files.c.id == df.c.file_id)
            .where(df.c.file_id.in_(chunk), visible(df, at), visible(files, at))
        ):
            member[m.file_id].append(m.dataset_id)
        if not member:
            continue
        ids = list(member)
        for r in conn.execute(
            select(flc.c.file_id, flc.c.label_id, flc.c.count.label("n")).where(
                flc.c.file_id.in_(ids), visible(flc, at)
            )
        ):
            for ds in member[r.file_id]:
                out[(ds, r.label_id, r.n, None, None, None, None)] += 1
        for a in conn.execute(
            select(fav.c.file_id, fav.c.key, fav.c.kind, fav.c.text, fav.c.number).where(
                fav.c.file_id.in_(ids), visible(fav, at)
            )
        ):
            if _aggregated(a.text):
                for ds in member[a.file_id]:
                    out[(ds, None, None, a.key, a.kind, a.text, a.number)] += 1
    return out


def refresh_dataset_counts(conn: Connection, file_ids: Iterable[int], rev: int) -> None:
    """Bring the aggregates up to commit ``rev``'s changes to ``file_ids`` (their instances'
    derived rows and memberships, already written). Once per commit per file."""
    ids = sorted(set(file_ids))
    if not ids:
        return
    delta: Counter[Key] = Counter()
    delta.update(_contributions(conn, ids, None))
    delta.subtract(_contributions(conn, ids, rev - 1))
    apply_counts(conn, delta, rev)


def new_files(delta: Counter[Key], dataset_id: int, rows: Sequence[Mapping[str, Any]]) -> None:
    """Add to ``delta`` what new members of ``dataset_id`` contribute, from all of their
    instance rows as inserted (equal to what the derived tables say of them)."""
    from annostream.query.compile import NOT_COUNTED

    labels: Counter[tuple[int, int]] = Counter()
    carried: set[tuple[int, Any]] = set()
    for r in rows:
        if r["label_id"] is not None and r["type"] not in NOT_COUNTED:
            labels[(r["file_id"], r["label_id"])] += 1
        carried.update((r["file_id"], e) for e in entries(r["attributes"]))
    for (_file, label_id), n in labels.items():
        delta[(dataset_id, label_id, n, None, None, None, None)] += 1
    for _file, (key, kind, entry_text, number) in carried:
        if _aggregated(entry_text):
            delta[(dataset_id, None, None, key, kind, entry_text, number)] += 1


def apply_counts(conn: Connection, delta: Mapping[Key, int], rev: int) -> None:
    """End the live aggregate rows that ``delta`` changes and start their new values at ``rev``."""
    changed = {k: d for k, d in delta.items() if d}
    if not changed:
        return
    dc = dataset_counts
    by_dataset: dict[int, list[Key]] = defaultdict(list)
    for k in changed:
        by_dataset[k[0]].append(k)
    live: dict[Key, tuple[int, int]] = {}
    for ds, keys in by_dataset.items():
        label_ids = sorted({k[1] for k in keys if k[1] is not None})
        attr_keys = sorted({k[3] for k in keys if k[3] is not None})
        for start in range(0, max(len(label_ids), len(attr_keys)), _CHUNK):
            which = []
            if label_ids[start : start + _CHUNK]:
                which.append(dc.c.label_id.in_(label_ids[start : start + _CHUNK]))
            if attr_keys[start : start + _CHUNK]:
                which.append(dc.c.key.in_(attr_keys[start : start + _CHUNK]))
            for r in conn.execute(
                select(dc).where(dc.c.dataset_id == ds, dc.c.deleted_rev.is_(None), or_(*which))
            ):
                key = (r.dataset_id, r.label_id, r._mapping["count"], r.key, r.kind, r.text, r.number)
                live[key] = (r.id, r.files)
    stale = [live[k][0] for k in changed if k in live]
    for start in range(0, len(stale), _CHUNK):
        end_rows(conn, dc, dc.c.id.in_(stale[start : start + _CHUNK]), rev)
    fresh = []
    for k, d in changed.items():
        files = (live[k][1] if k in live else 0) + d
        if files < 0:
            raise AssertionError(f"dataset_counts {k} would count {files} files")
        if files:
            ds, label_id, count, attr_key, kind, entry_text, number = k
            fresh.append(
                {
                    "dataset_id": ds,
                    "label_id": label_id,
                    "count": count,
                    "key": attr_key,
                    "kind": kind,
                    "text": entry_text,
                    "number": number,
                    "files": files,
                    "created_rev": rev,
                    "deleted_rev": None,
                }
            )
    if fresh:
        conn.execute(insert(dc), fresh)


def count_problems(conn: Connection) -> list[str]:
    """Where the live aggregates differ from the live derived tables (fsck; empty when sound)."""
    want: dict[Key, int] = {}
    for q in (_LABELS, _ATTRIBUTES):
        for r in conn.execute(text(q.format(extra=""))):
            want[tuple(r[:7])] = int(r[7])
    dc = dataset_counts
    have: dict[Key, int] = {}
    for r in conn.execute(select(dc).where(dc.c.deleted_rev.is_(None))):
        key = (r.dataset_id, r.label_id, r._mapping["count"], r.key, r.kind, r.text, r.number)
        have[key] = have.get(key, 0) + r.files
    return [
        f"dataset_counts: {k}: {have.get(k, 0)} stored, {want.get(k, 0)} counted"
        for k in sorted(set(want) | set(have), key=repr)
        if want.get(k, 0) != have.get(k, 0)
    ]
