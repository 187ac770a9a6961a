"""The derived, versioned index of attribute values per file (table ``file_attribute_values``).

Invariant: at every revision R, the rows visible at R are exactly the distinct entries
``(file, key, kind, text, number)`` carried by the file's instances visible at R. Writes keep
it in the commit that changes the instances (:func:`refresh_attribute_index`); stores made
before the table existed get the whole history at once (:func:`history_rows`, used by the
migration), so ``as_of`` an old revision answers as it did.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from sqlalchemy import Connection, insert, select

from annostream.store.tables import file_attribute_values, instances
from annostream.store.versioning import end_rows

# (key, kind, text, number): what one instance's attribute value contributes.
Entry = tuple[str, str, str | None, float | None]


def entries(attributes: dict[str, Any] | None) -> set[Entry]:
    """The index entries of one instance's attributes (JSON types, list text items too)."""
    out: set[Entry] = set()
    for key, value in (attributes or {}).items():
        if isinstance(value, bool):
            out.add((key, "true" if value else "false", None, None))
        elif isinstance(value, (int, float)):
            out.add((key, "number", None, float(value)))
        elif isinstance(value, str):
            out.add((key, "text", value, None))
        elif value is None:
            out.add((key, "null", None, None))
        elif isinstance(value, list):
            out.add((key, "array", None, None))
            out.update((key, "item", v, None) for v in value if isinstance(v, str))
        else:
            out.add((key, "object", None, None))
    return out


def _row(file_id: int, entry: Entry, created: int, deleted: int | None) -> dict[str, Any]:
    key, kind, text, number = entry
    return {
        "file_id": file_id,
        "key": key,
        "kind": kind,
        "text": text,
        "number": number,
        "created_rev": created,
        "deleted_rev": deleted,
    }


def refresh_attribute_index(conn: Connection, file_ids: list[int], rev: int) -> None:
    """Bring the live index rows of ``file_ids`` up to their live instances, at ``rev``."""
    fav = file_attribute_values
    for start in range(0, len(file_ids), 500):
        chunk = file_ids[start : start + 500]
        want: set[tuple[int, Entry]] = set()
        for r in conn.execute(
            select(instances.c.file_id, instances.c.attributes).where(
                instances.c.file_id.in_(chunk), instances.c.deleted_rev.is_(None)
            )
        ):
            want.update((r.file_id, e) for e in entries(r.attributes))
        have = {
            (r.file_id, (r.key, r.kind, r.text, r.number)): r.id
            for r in conn.execute(select(fav).where(fav.c.file_id.in_(chunk), fav.c.deleted_rev.is_(None)))
        }
        stale = [row_id for item, row_id in have.items() if item not in want]
        if stale:
            end_rows(conn, fav, fav.c.id.in_(stale), rev)
        fresh = [_row(f, e, rev, None) for f, e in want if (f, e) not in have]
        if fresh:
            conn.execute(insert(fav), fresh)


def history_rows(rows: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """Index rows for the whole history of some instances (each with file_id, attributes,
    created_rev, deleted_rev): an entry's lifetimes are the union of its carriers'."""
    spans: dict[tuple[int, Entry], list[tuple[int, int | None]]] = defaultdict(list)
    for r in rows:
        created, deleted = r["created_rev"], r["deleted_rev"]
        if deleted is not None and deleted <= created:
            continue  # never visible
        for e in entries(r["attributes"]):
            spans[(r["file_id"], e)].append((created, deleted))
    for (file_id, entry), lifetimes in spans.items():
        lifetimes.sort(key=lambda s: s[0])
        start, end = lifetimes[0]
        for created, deleted in lifetimes[1:]:
            if end is not None and created > end:  # a gap: the entry was absent in between
                yield _row(file_id, entry, start, end)
                start, end = created, deleted
            elif end is not None and (deleted is None or deleted > end):
                end = deleted
        yield _row(file_id, entry, start, end)
