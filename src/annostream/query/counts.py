"""A slice's count from the per-dataset aggregates, for the queries they answer exactly.

``exact_count`` answers one term (no ``and``/``or``/``not``) of two shapes:

* ``labels.<name> <op> n`` (``=``, ``<``, ``<=``, ``>``, ``>=``, ``in [..]``, or the bare name)
  on a name that resolves to one label, when a count of 0 does not satisfy it: every file
  has one count per label, so the files are the sum over the (label, n) rows whose n matches;
* ``attributes.<group> = v`` (or ``in`` one value) with v a number or a text shorter than
  ``AGGREGATED_TEXT_CHARS``: the files carrying that one entry.

Invariant: at every revision R >= ``projects.counts_from``, for such a query its answer
equals the count of the scan (``slice_select``) of the same query (see
``annostream.service.dataset_counts``). Anything else (``!=``, ``not``, several values,
several labels of one name, a range on attribute values, a term 0 satisfies, a revision
before ``counts_from``) answers None: the caller counts by the scan. Names are resolved and
bad values refused exactly as the compiler does, since it compiles the term first.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, func, select

from annostream.query.compile import Compiler, _as_number, _as_text
from annostream.query.parse import Compare, Has, In, Node, Value
from annostream.store.tables import AGGREGATED_TEXT_CHARS, dataset_counts, projects
from annostream.store.versioning import visible


def exact_count(conn: Connection, project_id: int, dataset_id: int, node: Node, rev: int) -> int | None:
    """The number of files of the dataset that ``node`` selects at ``rev``, or None when the
    aggregates cannot say it exactly (module docstring)."""
    if isinstance(node, Compare) and node.op != "!=":
        op, values = node.op, [node.value]
    elif isinstance(node, In):
        op, values = "in", list(node.values)
    elif isinstance(node, Has):
        op, values = "has", []
    else:
        return None
    f = node.field
    if f.namespace not in ("labels", "attributes"):
        return None
    compiler = Compiler(conn, project_id, rev)
    compiler.term(f, op, values)  # resolves the names and refuses bad values as a scan would
    dc = dataset_counts
    if f.namespace == "labels":
        ids = compiler.label_ids(f)
        pred, zero_ok = compiler._count_predicate(f, op, values)
        if len(ids) != 1 or zero_ok:
            return None
        where: list[ColumnElement[bool]] = [dc.c.label_id == ids[0], pred(dc.c.count)]
    else:
        entry = _attribute_entry(compiler, f, op, values)
        if entry is None:
            return None
        key, kind, column, value = entry
        where = [dc.c.key == key, dc.c.kind == kind, dc.c[column] == value]
    counts_from = select(projects.c.counts_from).where(projects.c.id == project_id).scalar_subquery()
    total, since = conn.execute(
        select(func.coalesce(func.sum(dc.c.files), 0), counts_from).where(
            dc.c.dataset_id == dataset_id, visible(dc, rev), *where
        )
    ).one()
    return int(total) if since is not None and rev >= since else None


def _attribute_entry(
    compiler: Compiler, f: Any, op: str, values: list[Value]
) -> tuple[str, str, str, Any] | None:
    """(key, kind, column, value) of the one index entry an attribute term asks for, if it is one."""
    if op not in ("=", "in") or len(values) != 1:
        return None
    group = compiler.group(f)
    key, kind = group["name"], group["kind"]
    if kind in ("select", "radio", "multi_select"):
        option = compiler._option(f, key, group["options"], values[0])
        return key, "item" if kind == "multi_select" else "text", "text", option
    if kind == "number":
        return key, "number", "number", float(_as_number(f, values[0]))
    text = _as_text(values[0])
    if len(text) >= AGGREGATED_TEXT_CHARS:
        return None
    return key, "text", "text", text
