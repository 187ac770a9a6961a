"""The query language (docs/query.md): text -> AST -> parameterised SQL over ``files``.

    >>> from annostream.query import parse
    >>> parse("3 < labels.cat")                      # doctest: +ELLIPSIS
    Compare(field=Field(namespace='labels', path=('cat',), ...), op='>', value=Value(value=3, ...))

``compile_query(conn, ds, text, rev)`` is what the service ANDs into a slice's SELECT.
"""

from annostream.errors import QueryError
from annostream.query.compile import compile_node, compile_query, normalize_label
from annostream.query.parse import And, Compare, Field, Has, In, Node, Not, Or, Value, parse, to_text

__all__ = [
    "And",
    "Compare",
    "Field",
    "Has",
    "In",
    "Node",
    "Not",
    "Or",
    "QueryError",
    "Value",
    "compile_node",
    "compile_query",
    "normalize_label",
    "parse",
    "to_text",
]
