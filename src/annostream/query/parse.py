"""Query text -> a small typed AST.

Parsing needs no database: it checks the syntax and the namespace of every field
(``labels``, ``instances``, ``file``, ``attributes``, ``dataset``), turns mirrored comparisons
around (``3 < labels.cat`` is ``labels.cat > 3``) and reads unquoted words as strings. Names
inside a namespace (which label, which attribute group) are checked by the compiler against
the project's vocabulary.

Every failure is a :class:`~annostream.errors.QueryError`; nothing else escapes ``parse``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from annostream.errors import QueryError

MAX_QUERY_LENGTH = 10_000
MAX_DEPTH = 64
MAX_TERMS = 500
MAX_LIST_ITEMS = 1_000

# Root word as written (any case) -> canonical namespace. Diffgram spells both forms.
NAMESPACES: dict[str, str] = {
    "labels": "labels",
    "label": "labels",
    "instances": "instances",
    "instance": "instances",
    "file": "file",
    "files": "file",
    "attributes": "attributes",
    "attribute": "attributes",
    "dataset": "dataset",
    "datasets": "dataset",
    "frame": "frame",
    "tracks": "tracks",
    "track": "tracks",
    "events": "events",
    "event": "events",
}

OPERATORS = {"=": "=", "==": "=", "!=": "!=", "<>": "!=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}
MIRRORED = {"=": "=", "!=": "!=", ">": "<", ">=": "<=", "<": ">", "<=": ">="}

Scalar = str | int | float | bool


# --------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Field:
    """A dotted reference: ``namespace`` is canonical, ``path`` the names after it."""

    namespace: str
    path: tuple[str, ...]
    text: str
    line: int
    column: int


@dataclass(frozen=True)
class Value:
    """A literal. ``quoted`` is False for bare words and numbers written as names."""

    value: Scalar
    text: str
    quoted: bool = True


@dataclass(frozen=True)
class Compare:
    field: Field
    op: str  # one of = != > >= < <=
    value: Value


@dataclass(frozen=True)
class In:
    field: Field
    values: tuple[Value, ...]


@dataclass(frozen=True)
class Has:
    """A field alone: ``labels.cat`` means ``labels.cat > 0``."""

    field: Field


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


Node = Compare | In | Has | Not | And | Or


# ------------------------------------------------------------------------ parser

_TERMINAL_NAMES = {
    "NAME": "a name",
    "STRING": "a quoted string",
    "NUMBER": "a number",
    "TRUE": "true",
    "FALSE": "false",
    "OP": "a comparison (= != > >= < <=)",
    "AND": "'and'",
    "OR": "'or'",
    "NOT": "'not'",
    "_IN": "'in'",
    "AMPAMP": "'&&'",
    "BARBAR": "'||'",
    "BANG": "'!'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "DOT": "'.'",
    "$END": "end of query",
}


@lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = resources.files("annostream.query").joinpath("grammar.lark").read_text()
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=False)


def _expected(names: Iterable[object]) -> list[str]:
    try:
        items = list(names)
    except TypeError:
        return []
    readable = {_TERMINAL_NAMES.get(str(n), str(n).strip("_").lower()) for n in items}
    return sorted(readable)


def _end_position(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    return len(lines), len(lines[-1]) + 1


def _error(message: str, text: str, line: int, column: int, expected: list[str]) -> QueryError:
    return QueryError(
        f"line {line}, column {column}: {message}",
        {"line": line, "column": column, "expected": expected, "query": text},
    )


def _syntax_error(exc: UnexpectedInput, text: str) -> QueryError:
    if isinstance(exc, UnexpectedCharacters):
        expected = _expected(exc.allowed or ())
        got = repr(exc.char)
        line, column = exc.line, exc.column
    elif isinstance(exc, UnexpectedToken):
        expected = _expected(exc.accepts or exc.expected or ())
        token = exc.token
        if token.type == "$END":
            line, column = _end_position(text)
            got = "end of query"
        else:
            line, column = token.line, token.column
            got = repr(str(token))
    elif isinstance(exc, UnexpectedEOF):
        expected = _expected(exc.expected or ())
        line, column = _end_position(text)
        got = "end of query"
    else:  # pragma: no cover - lark has no other kinds today
        expected, got = [], "input"
        line, column = _end_position(text)
    line = line if isinstance(line, int) and line > 0 else 1
    column = column if isinstance(column, int) and column > 0 else 1
    wanted = f"expected {', '.join(expected)}" if expected else "unexpected input"
    return _error(f"unexpected {got}; {wanted}", text, line, column, expected)


def unknown_name(
    kind: str,
    name: str,
    candidates: list[str] | set[str],
    *,
    line: int | None = None,
    column: int | None = None,
    **extra: object,
) -> QueryError:
    """The 400 for a name the project (or the language) does not have, with suggestions."""
    pool = sorted({c for c in candidates if isinstance(c, str)})
    lowered = {c.lower(): c for c in pool}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)
    suggestions = [lowered[c] for c in close]
    message = f"unknown {kind} '{name}'"
    if suggestions:
        message += f"; did you mean '{suggestions[0]}'?"
    detail: dict[str, object] = {"unknown": name, "kind": kind, "did_you_mean": suggestions}
    if line is not None:
        detail["line"] = line
        detail["column"] = column
    detail.update(extra)
    return QueryError(message, detail)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0"}
_INT_RE = re.compile(r"[+-]?\d+")


def _unquote(token: str) -> str:
    body = token[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def parse_number(text: str) -> int | float:
    """A numeric literal's value: an int when it is an integer that fits 64 bits, else a float."""
    if _INT_RE.fullmatch(text):
        value = int(text)
        # Beyond 64 bits no database column holds it; compare as a float instead.
        return value if -(2**63) <= value < 2**63 else float(value)
    return float(text)


def _segment(tok: Token) -> str:
    if tok.type == "STRING":
        return _unquote(str(tok))
    return str(tok)


@dataclass(frozen=True)
class _Path:
    """A dotted name before we know whether it is a field or a bare-word string."""

    segments: tuple[str, ...]
    text: str
    line: int
    column: int

    def namespace(self) -> str | None:
        return NAMESPACES.get(self.segments[0].lower())

    def as_value(self) -> Value:
        return Value(".".join(self.segments), self.text, quoted=False)


class _Builder:
    def __init__(self, text: str) -> None:
        self.text = text
        self.terms = 0

    # -- helpers
    def _path(self, tree: Tree[Token]) -> _Path:
        tokens = [t for t in tree.children if isinstance(t, Token) and t.type != "DOT"]
        first = tokens[0]
        start = tree.meta.start_pos if not tree.meta.empty else first.start_pos
        end = tree.meta.end_pos if not tree.meta.empty else first.end_pos
        return _Path(
            tuple(_segment(t) for t in tokens), self.text[start:end], first.line or 1, first.column or 1
        )

    def _operand(self, node: Tree[Token] | Token) -> _Path | Value:
        if isinstance(node, Tree) and node.data == "path":
            return self._path(node)
        assert isinstance(node, Tree) and node.data == "literal"
        tok = node.children[0]
        assert isinstance(tok, Token)
        if tok.type == "STRING":
            return Value(_unquote(str(tok)), str(tok), quoted=True)
        if tok.type == "NUMBER":
            return Value(parse_number(str(tok)), str(tok), quoted=False)
        return Value(tok.type == "TRUE", str(tok), quoted=False)

    def _field(self, path: _Path) -> Field:
        namespace = path.namespace()
        if namespace is None:
            raise unknown_name("field", path.segments[0], set(NAMESPACES), line=path.line, column=path.column)
        if len(path.segments) < 2:
            line, column = path.line, path.column + len(path.segments[0])
            raise _error(
                f"'{path.segments[0]}' needs a name after it, as in '{path.segments[0]}.<name>'",
                self.text,
                line,
                column,
                ["'.'"],
            )
        return Field(namespace, path.segments[1:], path.text, path.line, path.column)

    def _value(self, operand: _Path | Value) -> Value:
        return operand.as_value() if isinstance(operand, _Path) else operand

    def _count_term(self) -> None:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise QueryError(
                f"a query may have at most {MAX_TERMS} terms",
                {"line": 1, "column": 1, "expected": [], "query": self.text},
            )

    # -- node kinds
    def build(self, tree: Tree[Token] | Token) -> Node:
        if isinstance(tree, Token):  # pragma: no cover - the grammar never yields one here
            raise _error(f"unexpected {tree!s}", self.text, tree.line or 1, tree.column or 1, [])
        kind = tree.data
        if kind == "or_expr":
            return Or(tuple(self.build(c) for c in tree.children if isinstance(c, Tree)))
        if kind == "and_expr":
            return And(tuple(self.build(c) for c in tree.children if isinstance(c, Tree)))
        if kind == "negation":
            inner = [c for c in tree.children if isinstance(c, Tree)]
            return Not(self.build(inner[0]))
        if kind == "group":
            inner = [c for c in tree.children if isinstance(c, Tree)]
            return self.build(inner[0])
        if kind == "bare":
            self._count_term()
            path = tree.children[0]
            assert isinstance(path, Tree)
            return Has(self._field(self._path(path)))
        if kind == "comparison":
            self._count_term()
            return self._comparison(tree)
        if kind in ("inclusion", "exclusion"):
            self._count_term()
            return self._inclusion(tree, negate=kind == "exclusion")
        if kind == "path":  # a path alone after `?atom` inlining
            self._count_term()
            return Has(self._field(self._path(tree)))
        raise _error(f"unexpected {kind}", self.text, 1, 1, [])  # pragma: no cover

    def _comparison(self, tree: Tree[Token]) -> Compare:
        left_node, op_tok, right_node = tree.children
        assert isinstance(op_tok, Token)
        op = OPERATORS[str(op_tok)]
        left, right = self._operand(left_node), self._operand(right_node)
        if isinstance(left, _Path) and left.namespace() is not None:
            return Compare(self._field(left), op, self._value(right))
        if isinstance(right, _Path) and right.namespace() is not None:
            return Compare(self._field(right), MIRRORED[op], self._value(left))
        if isinstance(left, _Path):
            self._field(left)  # raises: unknown field, with suggestions
        if isinstance(right, _Path):
            self._field(right)
        line, column = op_tok.line or 1, op_tok.column or 1
        raise _error(
            "a comparison needs a field on one side, such as labels.<name> or file.<field>",
            self.text,
            line,
            column,
            ["a field"],
        )

    def _inclusion(self, tree: Tree[Token], negate: bool) -> Node:
        parts = [c for c in tree.children if isinstance(c, Tree)]
        subject, listing = parts[0], parts[1]
        operand = self._operand(subject)
        if not isinstance(operand, _Path):
            tok = subject.children[0]
            raise _error(
                "'in' needs a field on its left, such as file.name",
                self.text,
                getattr(tok, "line", 1) or 1,
                getattr(tok, "column", 1) or 1,
                ["a field"],
            )
        field = self._field(operand)
        items = [c for c in listing.children if isinstance(c, Tree)]
        if len(items) > MAX_LIST_ITEMS:
            raise _error(
                f"a list may have at most {MAX_LIST_ITEMS} items",
                self.text,
                listing.meta.line,
                listing.meta.column,
                [],
            )
        node: Node = In(field, tuple(self._value(self._operand(i)) for i in items))
        return Not(node) if negate else node


def _depth(tree: Tree[Token]) -> int:
    """Nesting depth of a parse tree, without recursion."""
    deepest = 0
    stack: list[tuple[Tree[Token], int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        for child in node.children:
            if isinstance(child, Tree):
                stack.append((child, depth + 1))
    return deepest


def parse(text: str) -> Node:
    """Parse query text into an AST, or raise QueryError (400) saying where and why."""
    if not isinstance(text, str):
        raise QueryError(
            "a query must be a string", {"line": 1, "column": 1, "expected": [], "query": repr(text)[:200]}
        )
    return _parse_cached(text)


@lru_cache(maxsize=512)
def _parse_cached(text: str) -> Node:
    if len(text) > MAX_QUERY_LENGTH:
        raise QueryError(
            f"a query may be at most {MAX_QUERY_LENGTH} characters long",
            {"line": 1, "column": MAX_QUERY_LENGTH + 1, "expected": [], "query": text[:200]},
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise QueryError(
            "a query must be valid unicode text",
            {"line": 1, "column": exc.start + 1, "expected": [], "query": text[:200]},
        ) from exc
    if not text.strip():
        line, column = _end_position(text)
        raise _error("the query is empty", text, line, column, ["a field"])
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text) from None
    except LarkError as exc:  # pragma: no cover - defensive
        raise QueryError(
            f"could not parse query: {exc}", {"line": 1, "column": 1, "expected": [], "query": text}
        ) from exc
    if not isinstance(tree, Tree):  # pragma: no cover
        raise _error("expected a condition", text, 1, 1, ["a field"])
    if _depth(tree) > MAX_DEPTH:
        raise QueryError(
            f"the query nests more than {MAX_DEPTH} levels deep",
            {"line": 1, "column": 1, "expected": [], "query": text},
        )
    return _Builder(text).build(tree)


def to_text(node: Node) -> str:
    """Render an AST back to canonical query text (parses to an equal AST)."""

    def value(v: Value) -> str:
        if isinstance(v.value, bool):
            return "true" if v.value else "false"
        if isinstance(v.value, (int, float)):
            return repr(v.value)
        return '"' + v.value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    def field(f: Field) -> str:
        return f.namespace + "".join(
            "."
            + (
                p
                if re.fullmatch(r"[^\W\d][\w\-]*", p)
                and p.lower() not in ("and", "or", "not", "in", "true", "false")
                else value(Value(p, p))
            )
            for p in f.path
        )

    def render(n: Node, parent: str) -> str:
        if isinstance(n, Compare):
            return f"{field(n.field)} {n.op} {value(n.value)}"
        if isinstance(n, In):
            return f"{field(n.field)} in [{', '.join(value(v) for v in n.values)}]"
        if isinstance(n, Has):
            return field(n.field)
        if isinstance(n, Not):
            inner = render(n.operand, "not")
            return f"not {inner}"
        if isinstance(n, And):
            out = " and ".join(render(c, "and") for c in n.operands)
            return f"({out})" if parent == "not" else out
        out = " or ".join(render(c, "or") for c in n.operands)
        return f"({out})" if parent in ("and", "not") else out

    return render(node, "")
