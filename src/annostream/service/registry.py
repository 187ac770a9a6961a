"""Which service function carries out each declared operation (annostream/operations.py).

A service function registers itself with ``@implements("name")``; the name must be declared
in ``OPERATIONS``. It is called as ``fn(store, subject, **args)``, where ``subject`` is the
``ProjectRef`` the policy granted (or the ``Principal`` for server-level operations, whose
``role`` is None), ``args`` the validated path and query parameters, plus ``body`` when the
operation has one. ``@implements_async`` adds an event-loop variant the server prefers
(a long poll that should hold no thread).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from annostream.operations import OPERATIONS

F = TypeVar("F", bound=Callable[..., Any])
IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {}
ASYNC_IMPLEMENTATIONS: dict[str, Callable[..., Awaitable[Any]]] = {}


def _register(table: dict[str, Any], name: str) -> Callable[[F], F]:
    if name not in OPERATIONS:
        raise KeyError(f"operation '{name}' is not declared in annostream.operations")

    def register(fn: F) -> F:
        if name in table:
            raise KeyError(f"operation '{name}' is implemented twice")
        table[name] = fn
        return fn

    return register


def implements(name: str) -> Callable[[F], F]:
    """Register the decorated function as the service side of operation ``name``."""
    return _register(IMPLEMENTATIONS, name)


def implements_async(name: str) -> Callable[[F], F]:
    """Register an async variant of operation ``name`` for the server's event loop."""
    return _register(ASYNC_IMPLEMENTATIONS, name)
