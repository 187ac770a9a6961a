"""AST -> a parameterised SQLAlchemy condition over ``files``, for one dataset at one revision.

Every name is resolved against the project's vocabulary before any SQL is built; values
travel as bound parameters only. Each term compiles to a two-valued condition (never SQL
NULL), so ``not`` is the exact complement of what it negates:

* ``labels.<name> <op> n``: the versioned per-file counts. When 0 satisfies the comparison
  the file qualifies unless a count row contradicts it, so files without any row (no such
  instance at all) match ``labels.cat = 0`` and ``labels.cat < 3``.
* ``instances.count`` / ``instances.<type>``: a correlated count of visible instances.
* ``file.<field>``, ``file.metadata.<key>`` (JSON; typed: a number matches numbers only, a
  string strings only, ``true``/``false`` booleans only); a missing value matches nothing.
* ``attributes.<group>``: some visible instance of the file carries the value (for
  ``multi_select``: its list contains the value), looked up in the derived attribute index
  (``file_attribute_values``, versioned like the counts) rather than in instances' JSON.
* ``dataset.id|name|tag``: the file is also in those datasets.
* ``tracks.count``: distinct track ids among the visible instances; ``events.<name>``: the
  count of events with that label.

A Compiler with ``frame`` set (a column holding a frame number, see
``annostream.service.frames``) selects frames of videos instead of files: ``labels``,
``instances`` and ``tracks`` count what lies on that frame, ``events.<name>`` counts events
covering it, and ``frame.number`` compares it; the other terms stay file-level.

``a != b`` is ``not (a = b)`` and ``a not in [..]`` is ``not (a in [..])`` for every term.

Lookups in the derived tables (a single label's count, an attribute) compile as one
uncorrelated set of file ids (the best plan to count or list a whole slice); with ``probe``
they compile as a correlated test per file instead (the best plan to read the first files of
a slice in id order: each file is one index probe, so the first page costs what it reads,
not what the whole slice holds). Both mean the same files.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from sqlalchemy import (
    ColumnElement,
    Connection,
    Float,
    Select,
    String,
    Table,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    true,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB

from annostream.errors import QueryError, TooCostly
from annostream.query.parse import (
    And,
    Compare,
    Field,
    Has,
    In,
    Node,
    Not,
    Or,
    Value,
    parse,
    parse_number,
    unknown_name,
)
from annostream.schema import InstanceType
from annostream.store.db import QUERY_BUDGET_KEY
from annostream.store.tables import (
    INDEXED_TEXT_CHARS,
    dataset_files,
    datasets,
    file_attribute_values,
    file_label_counts,
    files,
    instances,
)
from annostream.store.versioning import visible

if TYPE_CHECKING:
    from annostream.service.labels import Vocabulary

INSTANCE_TYPES: tuple[str, ...] = get_args(InstanceType)
Dialect = Literal["native", "diffgram"]

# file.<field> -> (column, kind). Metadata is file.metadata.<key>; in the Diffgram dialect
# (its SDK's slice queries) any other file.<key> is a metadata key too, as Diffgram reads it.
FILE_FIELDS: dict[str, tuple[Any, str]] = {
    "id": (files.c.id, "number"),
    "name": (files.c.original_filename, "string"),
    "original_filename": (files.c.original_filename, "string"),
    "type": (files.c.type, "string"),
    "width": (files.c.width, "number"),
    "height": (files.c.height, "number"),
    "created_at": (files.c.created_at, "datetime"),
    "duration": (files.c.duration, "number"),
    "frame_count": (files.c.frame_count, "number"),
    "fps": (files.c.fps, "number"),
    "codec": (files.c.codec, "string"),
}
NULLABLE_FILE_COLUMNS = {"width", "height", "duration", "frame_count", "fps", "codec"}
# Instance types that ``labels.<name>`` does not count (the same as the stored counts).
NOT_COUNTED = ("event", "relation")

PY_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_NUMBER_TEXT = re.compile(r"\s*[+-]?\d+(\.\d+)?([eE][+-]?\d+)?\s*")


def normalize_label(name: str) -> str:
    """How label names are matched: case-insensitively, with `_` standing for a space."""
    return name.casefold().replace("_", " ")


def _sql_op(expr: Any, op: str, value: Any) -> ColumnElement[bool]:
    condition: ColumnElement[bool] = PY_OPS[op](expr, value)  # SQLAlchemy overloads them
    return condition


def _describe(f: Field) -> str:
    return f.text or ".".join((f.namespace, *f.path))


def _bad_value(f: Field, message: str, **extra: Any) -> QueryError:
    detail = {"field": _describe(f), "line": f.line, "column": f.column, **extra}
    return QueryError(f"{_describe(f)}: {message}", detail)


def _as_number(f: Field, v: Value) -> int | float:
    if isinstance(v.value, bool):
        raise _bad_value(f, f"compares with a number, not {v.text}", value=v.text)
    if isinstance(v.value, (int, float)):
        return v.value
    if _NUMBER_TEXT.fullmatch(v.value):
        return parse_number(v.value.strip())
    raise _bad_value(f, f"compares with a number, not {v.text}", value=v.text)


def _as_text(v: Value) -> str:
    if isinstance(v.value, bool):
        return "true" if v.value else "false"
    if isinstance(v.value, str):
        return v.value
    return v.text


def _as_datetime(f: Field, v: Value) -> dt.datetime:
    if isinstance(v.value, str):
        try:
            value = dt.datetime.fromisoformat(v.value.strip())
        except ValueError:
            value = None
        if value is not None:
            if value.tzinfo is not None:
                value = value.astimezone(dt.UTC).replace(tzinfo=None)
            return value
    raise _bad_value(
        f, f'compares with a date such as "2024-01-31" or "2024-01-31T12:00:00", not {v.text}', value=v.text
    )


@dataclass
class _Json:
    """Typed comparisons on a value inside a JSON column, per dialect (SQLite or PostgreSQL)."""

    dialect: str

    def _check_keys(self, f: Field, keys: tuple[str, ...]) -> None:
        for key in keys:
            if '"' in key or "\\" in key or not key:
                raise _bad_value(f, "a JSON key may not be empty or contain '\"' or '\\'", key=key)

    def _sqlite_path(self, keys: tuple[str, ...]) -> str:
        return "$" + "".join(f'."{k}"' for k in keys)

    def _pg_value(self, column: Any, keys: tuple[str, ...]) -> ColumnElement[Any]:
        return func.jsonb_extract_path(cast(column, JSONB), *[literal(k) for k in keys])

    def _pg_text(self, column: Any, keys: tuple[str, ...]) -> ColumnElement[Any]:
        return func.jsonb_extract_path_text(cast(column, JSONB), *[literal(k) for k in keys])

    def compare(
        self, f: Field, column: Any, keys: tuple[str, ...], op: str, value: Any
    ) -> ColumnElement[bool]:
        """``column[keys] <op> value``, true only where the JSON value has value's type."""
        self._check_keys(f, keys)
        if isinstance(value, bool) and op != "=":
            raise _bad_value(f, f"true/false compare with = or != only, not {op}")
        if self.dialect == "postgresql":
            typ = func.coalesce(func.jsonb_typeof(self._pg_value(column, keys)), "")
            text = self._pg_text(column, keys)
            if isinstance(value, bool):
                return and_(typ == "boolean", text == ("true" if value else "false"))
            if isinstance(value, (int, float)):
                number = cast(case((typ == "number", text), else_=None), Float)
                return and_(typ == "number", _sql_op(number, op, float(value)))
            return and_(typ == "string", _sql_op(text, op, value))
        path = self._sqlite_path(keys)
        typ = func.coalesce(func.json_type(column, path), "")
        extracted = func.json_extract(column, path)
        if isinstance(value, bool):
            return typ == ("true" if value else "false")
        # The comparison first: SQLite stops at it for most rows and parses the JSON once;
        # the type test after it keeps the term two-valued (it is false wherever the value
        # is missing or null, which is where the comparison is NULL).
        if isinstance(value, (int, float)):
            return and_(_sql_op(extracted, op, value), typ.in_(["integer", "real"]))
        return and_(_sql_op(type_coerce(extracted, String), op, value), typ == "text")


@dataclass
class Compiler:
    conn: Connection
    project_id: int
    rev: int
    _vocab: Vocabulary | None = None
    _datasets: list[tuple[int, str]] | None = None
    metadata_fallback: bool = False
    frame: Any = None
    probe: bool = False
    json: _Json = field(init=False)

    def __post_init__(self) -> None:
        self.json = _Json(self.conn.dialect.name)

    # ---------------------------------------------------------------- vocabulary
    @property
    def vocab(self) -> Vocabulary:
        if self._vocab is None:
            from annostream.service.labels import vocabulary_at

            self._vocab = vocabulary_at(self.conn, self.project_id, self.rev)
        return self._vocab

    def project_datasets(self) -> list[tuple[int, str]]:
        if self._datasets is None:
            self._datasets = [
                (r.id, r.name)
                for r in self.conn.execute(
                    select(datasets.c.id, datasets.c.name)
                    .where(datasets.c.project_id == self.project_id, visible(datasets, self.rev))
                    .order_by(datasets.c.id)
                )
            ]
        return self._datasets

    def label_ids(self, f: Field) -> list[int]:
        if len(f.path) != 1:
            raise _bad_value(f, 'a label is named by one name; quote names with dots, as in labels."a.b"')
        name = f.path[0]
        entries = list(self.vocab.by_id.values())
        exact = [e["db_id"] for e in entries if e["name"] == name]
        if exact:
            return exact
        wanted = normalize_label(name)
        found = [e["db_id"] for e in entries if normalize_label(e["name"]) == wanted]
        if not found:
            raise unknown_name("label", name, [e["name"] for e in entries], line=f.line, column=f.column)
        return sorted(found)

    def group(self, f: Field) -> dict[str, Any]:
        if len(f.path) != 1:
            raise _bad_value(
                f, 'an attribute group is named by one name; quote names with dots, as in attributes."a.b"'
            )
        name = f.path[0]
        groups = self.vocab.groups
        if name in groups:
            return groups[name]
        wanted = normalize_label(name)
        for group_name, group in groups.items():
            if normalize_label(group_name) == wanted:
                return group
        raise unknown_name("attribute", name, list(groups), line=f.line, column=f.column)

    # ------------------------------------------------------------------ compiling
    def compile(self, node: Node) -> ColumnElement[bool]:
        if isinstance(node, And):
            return and_(*[self.compile(n) for n in node.operands])
        if isinstance(node, Or):
            return or_(*[self.compile(n) for n in node.operands])
        if isinstance(node, Not):
            return not_(self.compile(node.operand))
        if isinstance(node, Compare) and node.op == "!=":
            return not_(self.term(node.field, "=", [node.value]))
        if isinstance(node, Compare):
            return self.term(node.field, node.op, [node.value])
        if isinstance(node, In):
            return self.term(node.field, "in", list(node.values))
        if isinstance(node, Has):
            return self.term(node.field, "has", [])
        raise QueryError(f"cannot compile {type(node).__name__}")  # pragma: no cover

    def term(self, f: Field, op: str, values: list[Value]) -> ColumnElement[bool]:
        """One field against ``op`` ('=', '>', ..., 'in', or 'has' for a field alone)."""
        handler = {
            "labels": self.labels_term,
            "instances": self.instances_term,
            "file": self.file_term,
            "attributes": self.attributes_term,
            "dataset": self.dataset_term,
            "frame": self.frame_term,
            "tracks": self.tracks_term,
            "events": self.events_term,
        }[f.namespace]
        return handler(f, op, values)

    # -- counts
    def _count_predicate(
        self, f: Field, op: str, values: list[Value]
    ) -> tuple[Callable[[Any], ColumnElement[bool]], bool]:
        """(SQL predicate on a count, whether a count of 0 satisfies it)."""
        if op == "has":
            return (lambda c: c > 0), False
        numbers = [_as_number(f, v) for v in values]
        if op == "in":
            if not numbers:
                return (lambda c: false()), False
            return (lambda c: c.in_(numbers)), 0 in numbers
        n = numbers[0]
        return (lambda c: _sql_op(c, op, n)), PY_OPS[op](0, n)

    def _on_frame(self) -> list[ColumnElement[bool]]:
        """Instances of the file, and on the frame in frame mode."""
        where = [instances.c.file_id == files.c.id, visible(instances, self.rev)]
        if self.frame is not None:
            where.append(instances.c.frame_number == self.frame)
        return where

    def _count(
        self, f: Field, op: str, values: list[Value], what: Any, where: list[ColumnElement[bool]]
    ) -> ColumnElement[bool]:
        pred, _ = self._count_predicate(f, op, values)
        outer = [files] if self.frame is None else [files, self.frame.table]
        return pred(select(what).where(*where).correlate(*outer).scalar_subquery())

    def labels_term(self, f: Field, op: str, values: list[Value]) -> ColumnElement[bool]:
        ids = self.label_ids(f)
        if self.frame is not None:
            return self._count(
                f,
                op,
                values,
                func.count(instances.c.id),
                [*self._on_frame(), instances.c.label_id.in_(ids), instances.c.type.not_in(NOT_COUNTED)],
            )
        pred, zero_ok = self._count_predicate(f, op, values)
        flc = file_label_counts
        if len(ids) == 1:
            rows = select(flc.c.file_id).where(flc.c.label_id == ids[0], visible(flc, self.rev))
            # A probe looks the file's one row up by (file_id, label_id); "+ 0" hides the count
            # from the (label_id, count) index, which SQLite without statistics would otherwise
            # range-scan once per file probed (seconds for a first page). PostgreSQL plans by
            # its statistics, which imports refresh.
            sqlite_probe = self.probe and self.conn.dialect.name == "sqlite"
            count = flc.c.count + 0 if sqlite_probe else flc.c.count
            if zero_ok:  # no contradicting row: files without any row qualify too
                return not_(self._has_row(flc.c.file_id, rows.where(not_(pred(count)))))
            return self._has_row(flc.c.file_id, rows.where(pred(count)))
        total = (
            select(func.coalesce(func.sum(flc.c.count), 0))
            .where(flc.c.file_id == files.c.id, flc.c.label_id.in_(ids), visible(flc, self.rev))
            .correlate(files)
            .scalar_subquery()
        )
        return pred(total)

    def instances_term(self, f: Field, op: str, values: list[Value]) -> ColumnElement[bool]:
        path = [p.lower() for p in f.path]
        if path and path[-1] == "count":
            path = path[:-1]
        if len(path) > 1 or (path and path[0] not in INSTANCE_TYPES):
            raise unknown_name(
                "field", ".".join(f.path), ["count", *INSTANCE_TYPES], line=f.line, column=f.column
            )
        where = self._on_frame()
        if path:
            where.append(instances.c.type == path[0])
        return self._count(f, op, values, func.count(instances.c.id), where)

    # -- video
    def frame_term(self, f: Field, op: str, values: list[Value]) -> ColumnElement[bool]:
        if [p.lower() for p in f.path] != ["number"]:
            raise unknown_name("field", ".".join(f.path), ["number"], line=f.line, column=f.column)
        if self.frame is None:
            raise _bad_value(f, "selects frames of videos: use it in a frame query (ds.frames(query))")
        if op == "has":
            raise _bad_value(f, "needs a comparison, as in frame.number >= 100")
        numbers = [_as_number(f, v) for v in values]
        if op == "in":
            return self.frame.in_(numbers) if numbers else false()
        return _sql_op(self.frame, op, numbers[0])

    def tracks_term(self, f: Field, op: str, values: list[Value]) -> ColumnElement[bool]:
        if [p.lower() for p in f.path] != ["count"]:
            raise unknown_name("field", ".".join(f.path), ["count"], line=f.line, column=f.column)
        return self._count(
            f,
            op,
            values,
            func.count(instances.c.track_id.distinct()),
            [*self._on_frame(), instances.c.track_id.is_not(None)],
        )

    def events_term(self, f: Field, op: str, values: list[Value]) -> ColumnElement[bool]:
        ids = self.label_ids(f)
        where = [
            instances.c.file_id == files.c.id,
            visible(instances, self.rev),
            instances.c.type == "event",
            instances.c.label_id.in_(ids),
        ]
        if self.frame is not None:
            where += [instances.c.range_start <= self.frame, instances.c.range_end >= self.frame]
        return self._count(f, op, values, func.count(instances.c.id), where)

    # -- files
    def file_term(self, f: Field, op: str, values: list[Value]) -> ColumnElement[bool]:
        head = f.path[0].lower()
        if head == "metadata" and len(f.path) == 1:
            raise _bad_value(f, "name a metadata key, as in file.metadata.split")
        if head == "metadata":
            return self.json_term(f, files.c.metadata, tuple(f.path[1:]), op, values)
        if len(f.path) == 1 and head in FILE_FIELDS:
            return self.column_term(f, head, op, values)
        if not self.metadata_fallback:
            known = unknown_name(
                "file field", f.path[0], [*FILE_FIELDS, "metadata"], line=f.line, column=f.column
            )
            raise QueryError(
                f"{known.message} (a metadata key is written file.metadata.{f.path[0]})", known.detail
            )
        return self.json_term(f, files.c.metadata, tuple(f.path), op, values)

    def column_term(self, f: Field, name: str, op: str, values: list[Value]) -> ColumnElement[bool]:
        column, kind = FILE_FIELDS[name]
        if op == "has":
            raise _bad_value(f, "needs a comparison, as in file.width >= 640")
        if kind == "number":
            converted: list[Any] = [_as_number(f, v) for v in values]
        elif kind == "datetime":
            converted = [_as_datetime(f, v) for v in values]
        else:
            converted = [_as_text(v) for v in values]
        if op == "in":
            condition = column.in_(converted) if converted else false()
        else:
            condition = _sql_op(column, op, converted[0])
        if name in NULLABLE_FILE_COLUMNS:
            condition = and_(column.is_not(None), condition)
        return condition

    def json_term(
        self, f: Field, column: Any, keys: tuple[str, ...], op: str, values: list[Value]
    ) -> ColumnElement[bool]:
        if op == "has":
            raise _bad_value(f, 'needs a comparison, as in file.metadata.split = "train"')
        if op == "in":
            if not values:
                return false()
            return or_(*[self.json.compare(f, column, keys, "=", v.value) for v in values])
        return self.json.compare(f, column, keys, op, values[0].value)

    # -- attributes
    def attributes_term(self, f: Field, op: str, values: list[Value]) -> ColumnElement[bool]:
        """Over the derived attribute index: the files whose visible instances carry a value."""
        group = self.group(f)
        key, kind, options = group["name"], group["kind"], group["options"]
        fav = file_attribute_values
        if op == "has":
            return self._carrying(key, true())
        if kind in ("select", "radio", "multi_select"):
            if op not in ("=", "in"):
                raise _bad_value(f, f"a {kind} attribute compares with = != or in, not {op}")
            wanted = [self._option(f, key, options, v) for v in values]
            if not wanted:
                return false()
            if kind == "multi_select":
                return self._carrying(key, and_(fav.c.kind == "item", fav.c.text.in_(wanted)))
            converted: list[Any] = wanted
        elif kind == "number":
            converted = [_as_number(f, v) for v in values]
        else:  # text, date and anything newer: strings
            converted = [_as_text(v) for v in values]
        if op == "in":
            return self._carrying(key, or_(*[self._value(fav, "=", v) for v in converted]))
        return self._carrying(key, self._value(fav, op, converted[0]))

    def _value(self, fav: Table, op: str, value: Any) -> ColumnElement[bool]:
        """An index row holding a value of ``value``'s JSON type that compares ``op`` to it."""
        if isinstance(value, bool):
            return fav.c.kind == ("true" if value else "false")
        if isinstance(value, (int, float)):
            return and_(fav.c.kind == "number", _sql_op(fav.c.number, op, float(value)))
        condition = and_(fav.c.kind == "text", _sql_op(fav.c.text, op, value))
        if op == "=" and len(value) < INDEXED_TEXT_CHARS:  # lets PostgreSQL use its partial index
            condition = and_(condition, func.length(fav.c.text) < INDEXED_TEXT_CHARS)
        return condition

    def _carrying(self, key: str, condition: ColumnElement[bool]) -> ColumnElement[bool]:
        fav = file_attribute_values
        # A probe looks the file's few rows up by file id: "|| ''" hides the key from the
        # (key, kind, number) index, which SQLite without statistics would range-scan per file.
        sqlite_probe = self.probe and self.conn.dialect.name == "sqlite"
        named = fav.c.key.concat(literal_column("''")) if sqlite_probe else fav.c.key
        rows = select(fav.c.file_id).where(named == key, condition, visible(fav, self.rev))
        return self._has_row(fav.c.file_id, rows)

    def _has_row(self, file_id: Any, rows: Select[Any]) -> ColumnElement[bool]:
        """The file has a row in ``rows`` (ids selected by ``file_id``): a set, or a probe."""
        if self.probe:
            return exists(rows.where(file_id == files.c.id).correlate(files))
        return files.c.id.in_(rows.correlate(None))

    def _option(self, f: Field, group: str, options: list[str], v: Value) -> str:
        text = _as_text(v)
        if text in options:
            return text
        lowered = [o for o in options if o.casefold() == text.casefold()]
        if lowered:
            return lowered[0]
        raise unknown_name("option", text, options, line=f.line, column=f.column, group=group)

    # -- datasets
    def dataset_term(self, f: Field, op: str, values: list[Value]) -> ColumnElement[bool]:
        head = f.path[0].lower()
        known = self.project_datasets()
        if op == "has":
            ids = [self._dataset_by_name(f, ".".join(f.path), known)]
        elif len(f.path) == 1 and head in ("id", "name", "tag"):
            if op not in ("=", "in"):
                raise _bad_value(f, f"dataset membership compares with = != or in, not {op}")
            if head == "id":
                ids = [self._dataset_by_id(f, v, known) for v in values]
            else:
                ids = [self._dataset_by_name(f, _as_text(v), known) for v in values]
        else:
            raise unknown_name("field", ".".join(f.path), ["id", "name", "tag"], line=f.line, column=f.column)
        if not ids:
            return false()
        other = dataset_files.alias("query_dataset_files")
        return exists(
            select(other.c.id)
            .where(
                other.c.file_id == files.c.id,
                other.c.dataset_id.in_(sorted(set(ids))),
                visible(other, self.rev),  # type: ignore[arg-type]
            )
            .correlate(files)
        )

    def _dataset_by_id(self, f: Field, v: Value, known: list[tuple[int, str]]) -> int:
        number = _as_number(f, v)
        for ds_id, _name in known:
            if ds_id == number:
                return ds_id
        raise unknown_name("dataset", v.text, [str(i) for i, _ in known], line=f.line, column=f.column)

    def _dataset_by_name(self, f: Field, name: str, known: list[tuple[int, str]]) -> int:
        for ds_id, ds_name in known:
            if ds_name == name:
                return ds_id
        for ds_id, ds_name in known:
            if ds_name.casefold() == name.casefold():
                return ds_id
        raise unknown_name("dataset", name, [n for _, n in known], line=f.line, column=f.column)


def compile_node(
    conn: Connection,
    project_id: int,
    node: Node,
    rev: int,
    *,
    dialect: Dialect = "native",
    probe: bool = False,
) -> ColumnElement[bool]:
    return Compiler(conn, project_id, rev, metadata_fallback=dialect == "diffgram", probe=probe).compile(node)


# What one term costs per file scanned: a count of instances or a sum over several labels is
# a correlated subquery per file; a JSON lookup is dearer than a column; a single label's
# membership and a dataset test are one indexed lookup for the whole query.
TERM_COST = {
    "instances": 4,
    "attributes": 4,
    "tracks": 4,
    "events": 4,
    "frame": 4,
    "file": 2,
    "labels": 2,
    "dataset": 1,
}
UNKNOWN_TERM_COST = 4  # a namespace added later costs as a correlated subquery until weighed


def query_cost(node: Node) -> int:
    """The query's weight against a server's budget: the sum of its terms' costs."""
    total, stack = 0, [node]
    while stack:
        n = stack.pop()
        if isinstance(n, (And, Or)):
            stack.extend(n.operands)
        elif isinstance(n, Not):
            stack.append(n.operand)
        else:
            total += TERM_COST.get(n.field.namespace, UNKNOWN_TERM_COST)
    return total


def compile_query(
    conn: Connection, ds: Any, query: str, rev: int, *, dialect: Dialect = "native", probe: bool = False
) -> ColumnElement[bool]:
    """The condition on ``files`` that ``query`` means in dataset ``ds`` at revision ``rev``.

    Raises QueryError (400) for text that does not parse and for names the project lacks,
    and TooCostly (400) for a query over the connection's cost budget (servers set one).
    ``dialect="diffgram"`` reads an unknown ``file.<key>`` as metadata, as Diffgram does.
    ``probe``: derived-table lookups as a test per file (for first pages; module docstring).
    """
    return compile_node(conn, ds.project.id, checked_node(conn, query), rev, dialect=dialect, probe=probe)


def checked_node(conn: Connection, query: str) -> Node:
    """The parsed query, refused (400) when it does not parse or costs over the connection's budget."""
    node = parse(query)
    budget = conn.info.get(QUERY_BUDGET_KEY)
    if budget is not None and (cost := query_cost(node)) > budget:
        raise TooCostly(
            f"the query costs {cost}, over this server's budget of {budget} "
            f"(terms weigh {', '.join(f'{k} {v}' for k, v in TERM_COST.items())}); "
            "split it or narrow it",
            {"cost": cost, "budget": budget},
        )
    return node
