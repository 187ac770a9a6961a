"""Labels and attribute groups: the vocabulary instances are written in.

Each label gets a ``label_index``: 1..N in creation order within the project, never reused,
so models see stable contiguous class ids (0 stays free for background).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select

from annostream.errors import Conflict, InvalidInput
from annostream.query.counts import counts_from, covers
from annostream.schema import AttributeGroupCreate, LabelCreate
from annostream.service.projects import ProjectRef
from annostream.service.registry import implements
from annostream.store import Store
from annostream.store.db import inserted_id
from annostream.store.tables import (
    attribute_groups,
    attribute_options,
    dataset_counts,
    file_label_counts,
)
from annostream.store.tables import labels as labels_table
from annostream.store.versioning import begin_commit, head_revision, visible


@dataclass
class Vocabulary:
    """A project's labels and attribute groups at one revision, for validating and reading."""

    by_id: dict[int, dict[str, Any]] = field(default_factory=dict)
    by_name: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)

    def label(self, name: str, where: str) -> dict[str, Any]:
        found = self.by_name.get(name) or self.by_name.get(name.lower())
        if found is None:
            raise InvalidInput(f"{where}: unknown label '{name}'", {"field": where, "label": name})
        return found


def load_vocabulary(conn: Connection, project_id: int, rev: int | None) -> Vocabulary:
    vocab = Vocabulary()
    for row in conn.execute(
        select(labels_table).where(labels_table.c.project_id == project_id, visible(labels_table, rev))
    ):
        entry = {
            "db_id": row.id,
            "id": row.label_index,
            "name": row.name,
            "color": row.color,
            "spec": row.spec or {},
        }
        vocab.by_id[row.id] = entry
        vocab.by_name[row.name] = entry
        vocab.by_name.setdefault(row.name.lower(), entry)
    group_rows = conn.execute(
        select(attribute_groups).where(
            attribute_groups.c.project_id == project_id, visible(attribute_groups, rev)
        )
    ).all()
    for g in group_rows:
        vocab.groups[g.name] = {"id": g.id, "name": g.name, "kind": g.kind, "options": []}
    if group_rows:
        by_group_id = {g.id: vocab.groups[g.name] for g in group_rows}
        for opt in conn.execute(
            select(attribute_options)
            .where(attribute_options.c.group_id.in_(list(by_group_id)), visible(attribute_options, rev))
            .order_by(attribute_options.c.id)
        ):
            by_group_id[opt.group_id]["options"].append(opt.name)
    return vocab


_VOCABULARIES: weakref.WeakKeyDictionary[Engine, OrderedDict[tuple[int, int], Vocabulary]] = (
    weakref.WeakKeyDictionary()
)
_VOCABULARIES_LOCK = threading.Lock()
_VOCABULARIES_MAX = 64


def vocabulary_at(conn: Connection, project_id: int, rev: int) -> Vocabulary:
    """The vocabulary at ``rev`` (a committed revision, never the head as None), cached per
    engine: what a committed revision holds never changes. Callers only read it."""
    key = (project_id, rev)
    with _VOCABULARIES_LOCK:
        cached = _VOCABULARIES.setdefault(conn.engine, OrderedDict())
        found = cached.get(key)
        if found is not None:
            cached.move_to_end(key)
            return found
    vocab = load_vocabulary(conn, project_id, rev)
    with _VOCABULARIES_LOCK:
        cached[key] = vocab
        while len(cached) > _VOCABULARIES_MAX:
            cached.popitem(last=False)
    return vocab


def check_attributes(vocab: Vocabulary, values: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate attribute values against their groups' kinds and options."""
    for name, value in values.items():
        field_name = f"{where}.attributes.{name}"
        group = vocab.groups.get(name)
        if group is None:
            raise InvalidInput(f"{field_name}: unknown attribute group '{name}'", {"field": field_name})
        kind, options = group["kind"], group["options"]
        if kind in ("select", "radio"):
            ok = isinstance(value, str) and value in options
        elif kind == "multi_select":
            ok = isinstance(value, list) and all(isinstance(v, str) and v in options for v in value)
        elif kind == "number":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            expected = f"one of {options}" if options else f"a {kind} value"
            raise InvalidInput(
                f"{field_name}: {value!r} is not {expected}", {"field": field_name, "value": value}
            )
    return values


def ensure_labels(
    conn: Connection,
    project_id: int,
    rev: int,
    specs: list[LabelCreate],
    extra: dict[str, dict[str, Any]] | None = None,
) -> dict[str, int]:
    """Create the labels that do not exist yet (by exact name); return name -> row id."""
    existing = {
        r.name: r.id
        for r in conn.execute(
            select(labels_table.c.name, labels_table.c.id).where(
                labels_table.c.project_id == project_id, labels_table.c.deleted_rev.is_(None)
            )
        )
    }
    next_index = (
        conn.execute(
            select(func.max(labels_table.c.label_index)).where(labels_table.c.project_id == project_id)
        ).scalar()
        or 0
    )
    for spec in specs:
        if spec.name in existing:
            continue
        next_index += 1
        existing[spec.name] = inserted_id(
            conn.execute(
                insert(labels_table).values(
                    project_id=project_id,
                    label_index=next_index,
                    name=spec.name,
                    color=spec.color,
                    spec=(extra or {}).get(spec.name, {}),
                    created_rev=rev,
                )
            )
        )
    return existing


def list_labels(store: Store, ref: ProjectRef, as_of: int | None = None) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        vocab = load_vocabulary(conn, ref.id, as_of)
    return sorted(
        ({k: v for k, v in e.items() if k != "db_id"} for e in vocab.by_id.values()),
        key=lambda e: e["id"],
    )


def create_label(store: Store, ref: ProjectRef, spec: LabelCreate) -> dict[str, Any]:
    with store.engine.begin() as conn:
        if spec.name in load_vocabulary(conn, ref.id, None).by_name:
            raise Conflict(f"label '{spec.name}' already exists")
        rev = begin_commit(conn, ref.id, f"label {spec.name}")
        ensure_labels(conn, ref.id, rev, [spec])
    return next(e for e in list_labels(store, ref) if e["name"] == spec.name)


def list_attribute_groups(store: Store, ref: ProjectRef, as_of: int | None = None) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        vocab = load_vocabulary(conn, ref.id, as_of)
    return [{k: v for k, v in g.items() if k != "id"} for g in vocab.groups.values()]


def create_attribute_group(store: Store, ref: ProjectRef, spec: AttributeGroupCreate) -> dict[str, Any]:
    with store.engine.begin() as conn:
        if spec.name in load_vocabulary(conn, ref.id, None).groups:
            raise Conflict(f"attribute group '{spec.name}' already exists")
        rev = begin_commit(conn, ref.id, f"attribute group {spec.name}")
        group_id = inserted_id(
            conn.execute(
                insert(attribute_groups).values(
                    project_id=ref.id, name=spec.name, kind=spec.kind, created_rev=rev
                )
            )
        )
        for option in spec.options:
            conn.execute(insert(attribute_options).values(group_id=group_id, name=option, created_rev=rev))
    return {"name": spec.name, "kind": spec.kind, "options": list(spec.options)}


def current_revision(store: Store, ref: ProjectRef) -> int:
    with store.engine.connect() as conn:
        return head_revision(conn, ref.id)


@implements("label_counts")
def label_counts(
    store: Store, ref: ProjectRef, dataset: str, query: str | None = None, as_of: int | None = None
) -> dict[str, Any]:
    """Per label of the vocabulary at the revision: how many files of the slice (``dataset``,
    filtered by ``query``) hold it, and its instances there; unused labels count zero. A whole
    dataset at a revision the per-dataset counts cover sums them (a few rows per label,
    whatever the size); otherwise one grouped query over the per-(file, label) counts."""
    from annostream.service.datasets import get_dataset, resolve_revision, slice_select

    ds = get_dataset(store, ref, dataset, as_of)
    with store.engine.connect() as conn:
        rev = resolve_revision(conn, ref, as_of)
        vocab = load_vocabulary(conn, ref.id, rev)
        counted = None if query else _summed_label_counts(conn, ref.id, ds.id, rev)
        if counted is None:
            counted = _scanned_label_counts(conn, slice_select(conn, ds, query, rev).order_by(None), rev)
    rows = [
        {
            "id": e["id"],
            "name": e["name"],
            "files": counted.get(db_id, (0, 0))[0],
            "instances": counted.get(db_id, (0, 0))[1],
        }
        for db_id, e in vocab.by_id.items()
    ]
    return {"dataset": ds.name, "revision": rev, "labels": sorted(rows, key=lambda r: r["id"])}


def _scanned_label_counts(conn: Connection, in_slice: Any, rev: int) -> dict[int, tuple[int, int]]:
    """label row id -> (files, instances) over the files of ``in_slice`` (a file id select)."""
    return {
        row.label_id: (int(row.files), int(row.instances))
        for row in conn.execute(
            select(
                file_label_counts.c.label_id,
                func.count(func.distinct(file_label_counts.c.file_id)).label("files"),
                func.sum(file_label_counts.c.count).label("instances"),
            )
            .where(file_label_counts.c.file_id.in_(in_slice), visible(file_label_counts, rev))
            .group_by(file_label_counts.c.label_id)
        )
    }


def _summed_label_counts(
    conn: Connection, project_id: int, dataset_id: int, rev: int
) -> dict[int, tuple[int, int]] | None:
    """The same for a whole dataset from ``dataset_counts`` (files with n instances of a label,
    per n), or None at a revision before the project's ``counts_from``."""
    if not covers(conn.execute(select(counts_from(project_id))).scalar(), rev):
        return None
    dc = dataset_counts
    return {
        row.label_id: (int(row.files), int(row.instances))
        for row in conn.execute(
            select(
                dc.c.label_id,
                func.sum(dc.c.files).label("files"),
                func.sum(dc.c.files * dc.c.count).label("instances"),
            )
            .where(dc.c.dataset_id == dataset_id, dc.c.label_id.is_not(None), visible(dc, rev))
            .group_by(dc.c.label_id)
        )
    }
