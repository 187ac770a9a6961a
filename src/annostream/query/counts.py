"""A slice's count without a scan of the dataset, for the queries that allow it.

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
before ``counts_from``) answers None. Names are resolved and bad values refused exactly as
the compiler does, since it compiles the term first.

``driven_count`` counts a conjunction holding such a term (``labels.cat > 2 and
file.metadata.split = val``) from that term's rows in the per-file tables, an index range,
checking each file's membership and the other terms: it reads the files the term selects,
not every file of the dataset, and needs no aggregates (any revision). Other queries are
counted by the scan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, Table, func, select

from annostream.query.compile import Compiler, _as_number, _as_text
from annostream.query.parse import And, Compare, Field, Has, In, Node, Value
from annostream.store.tables import (
    AGGREGATED_TEXT_CHARS,
    dataset_counts,
    dataset_files,
    file_attribute_values,
    file_label_counts,
    files,
    projects,
)
from annostream.store.versioning import visible


@dataclass(frozen=True)
class _Exact:
    """One term the derived tables answer row by row: a label's count, or one attribute entry."""

    label_id: int | None
    pred: Callable[[Any], ColumnElement[bool]] | None
    entry: tuple[str, str, str, Any] | None  # (key, kind, column, value)

    def on(self, table: Table, count: Any) -> list[ColumnElement[bool]]:
        """Its conditions on ``table`` (dataset_counts, file_label_counts or file_attribute_values)."""
        if self.entry is None:
            assert self.pred is not None
            return [table.c.label_id == self.label_id, self.pred(count)]
        key, kind, column, value = self.entry
        return [table.c.key == key, table.c.kind == kind, table.c[column] == value]


def _term(node: Node) -> tuple[Field, str, list[Value]] | None:
    if isinstance(node, Compare) and node.op != "!=":
        return node.field, node.op, [node.value]
    if isinstance(node, In):
        return node.field, "in", list(node.values)
    if isinstance(node, Has):
        return node.field, "has", []
    return None


def _exact(compiler: Compiler, node: Node) -> _Exact | None:
    """What one term asks of the derived tables when they answer it exactly (module docstring)."""
    term = _term(node)
    if term is None or term[0].namespace not in ("labels", "attributes"):
        return None
    f, op, values = term
    compiler.term(f, op, values)  # resolves the names and refuses bad values as a scan would
    if f.namespace == "labels":
        ids = compiler.label_ids(f)
        pred, zero_ok = compiler._count_predicate(f, op, values)
        return _Exact(ids[0], pred, None) if len(ids) == 1 and not zero_ok else None
    entry = _attribute_entry(compiler, f, op, values)
    return _Exact(None, None, entry) if entry is not None else None


def exact_count(conn: Connection, project_id: int, dataset_id: int, node: Node, rev: int) -> int | None:
    """The number of files of the dataset that ``node`` selects at ``rev``, or None when the
    aggregates cannot say it exactly (module docstring)."""
    exact = _exact(Compiler(conn, project_id, rev), node)
    if exact is None:
        return None
    dc = dataset_counts
    total, since = conn.execute(
        select(func.coalesce(func.sum(dc.c.files), 0), counts_from(project_id)).where(
            dc.c.dataset_id == dataset_id, visible(dc, rev), *exact.on(dc, dc.c.count)
        )
    ).one()
    return int(total) if covers(since, rev) else None


def counts_from(project_id: int) -> Any:
    """The project's first revision the per-dataset counts answer for (NULL: none), as a
    scalar subquery to read beside what is summed."""
    return select(projects.c.counts_from).where(projects.c.id == project_id).scalar_subquery()


def covers(since: int | None, rev: int) -> bool:
    """Whether the per-dataset counts answer at ``rev``, given the project's ``counts_from``."""
    return since is not None and rev >= since


def driven_count(
    conn: Connection, project_id: int, dataset_id: int, node: Node, rev: int
) -> Select[Any] | None:
    """For a conjunction with a term the derived tables answer exactly: the count of the
    slice as a walk of that term's rows (an index range), each file then checked for
    membership and the other terms; None for any other query. The same number as the scan
    (a file has one visible count row per label, and one row per attribute entry)."""
    if not isinstance(node, And):
        return None
    compiler = Compiler(conn, project_id, rev)
    for i, operand in enumerate(node.operands):
        exact = _exact(compiler, operand)
        if exact is None:
            continue
        table = file_label_counts if exact.entry is None else file_attribute_values
        others = [compiler.compile(n) for j, n in enumerate(node.operands) if j != i]
        df = dataset_files
        return (
            select(func.count())
            .select_from(table)
            .join(files, files.c.id == table.c.file_id)
            .join(df, df.c.file_id == table.c.file_id)
            .where(
                *exact.on(table, table.c.get("count")),
                visible(table, rev),
                df.c.dataset_id == dataset_id,
                visible(df, rev),
                visible(files, rev),
                *others,
            )
        )
    return None


def _attribute_entry(
    compiler: Compiler, f: Field, op: str, values: list[Value]
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
