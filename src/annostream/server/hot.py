"""The hot routes (``items:batch``) answered by a plain ASGI handler in front of FastAPI's router.

Streaming and ``ds[i]`` are one ``items:batch`` request per batch or item; FastAPI's routing
(every route's pattern tried in turn) and its per-request machinery cost more CPU than
authorising and reading a one-item batch. This middleware matches the hot operations' method
and path itself and calls the very handler the router would (``api_v2.endpoint``: the same
declaration, policy before the body, body caps, service function and reply), rendering any
error with the app's own exception handlers, so the answer is the same byte for byte.

Where the database is a file on this machine (SQLite), a small batch (``LOOP_IDS``, blobs
none or on local disk) asked for by a client reading alone (one connection, as ``ds[i]`` or
a sequential pass) is authorised, read and rendered on the event loop: two hops to a
worker thread and back cost more CPU than the work (about half of a one-item request's, more
on a loaded machine). The loop never waits there: not for a pooled connection (while none is
free, the request goes to worker threads as before), nor for a write (a key's once-a-minute
use record is handed to a worker thread). PostgreSQL and object stores keep their waits in
worker threads.

Invariants: it is the innermost middleware (CORS, timings and the other middleware still
wrap it); anything it does not match (another method, path or operation) goes to the app
unchanged; an exception without a handler propagates as it would from the router (500).
"""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import Callable, Coroutine
from typing import Any

from sqlalchemy.pool import QueuePool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from annostream.operations import API_PREFIX, OPERATIONS
from annostream.server.api_v2 import Here, endpoint
from annostream.store import Store

HOT_OPERATIONS = ("items_batch",)
# A batch of at most this many ids, read from a database in a local file with no blobs or
# local ones, is served on the event loop (a few ms at most, less than two thread hops cost).
LOOP_IDS = 128
# ... and only while no other connection asked for a hot route within this many seconds.
ALONE_S = 0.5


def _here(store: Store, callers: dict[Any, float]) -> Here:
    """Whether a request's policy (``args`` None), then its batch, runs on the event loop: only
    while one connection alone has asked for hot routes lately (``callers``: several clients
    at once overlap their statements and blob reads in worker threads, on every core; on the
    loop they would wait for each other), while the pool has a connection to give at once (the
    loop must never wait for one), and for a batch, when it is small and its blobs, if inline,
    are local files."""
    pool = store.engine.pool
    local_blobs = getattr(store.blobs, "local_file", None) is not None

    def here(args: dict[str, Any] | None) -> bool:
        if len(callers) > 1:
            return False
        if isinstance(pool, QueuePool) and pool.checkedin() == 0 and pool.checkedout() >= pool.size():
            return False
        if args is None:
            return True
        body = args["body"]
        return len(body.ids) <= LOOP_IDS and (local_blobs or body.blobs != "inline")

    return here


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class HotRoutes:
    """ASGI middleware: requests for ``HOT_OPERATIONS`` go straight to their handlers."""

    def __init__(self, app: ASGIApp, store: Store) -> None:
        self.app = app
        # The connections (client address and port) that asked for a hot route within the last
        # ALONE_S seconds, with when they last did (touched by the event loop's thread alone).
        self.callers: dict[Any, float] = {}
        here = _here(store, self.callers) if store.engine.dialect.name == "sqlite" else None
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        for name in HOT_OPERATIONS:
            op = OPERATIONS[name]
            pattern, _, _ = compile_path(API_PREFIX + op.path)
            self.routes.append((op.method, pattern, endpoint(op, here)))

    def _seen(self, client: Any) -> None:
        now = time.monotonic()
        self.callers[client] = now
        if len(self.callers) > 1:
            for other, last in list(self.callers.items()):
                if last < now - ALONE_S:
                    del self.callers[other]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            for method, pattern, handler in self.routes:
                if scope["method"] != method:
                    continue
                match = pattern.match(scope["path"])
                if match is not None:
                    scope["path_params"] = match.groupdict()
                    self._seen(scope.get("client"))
                    await _answer(handler, scope, receive, send)
                    return
        await self.app(scope, receive, send)


async def _answer(handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
    request = Request(scope, receive, send)
    try:
        response = await handler(request)
    except Exception as exc:
        render = _exception_handler(scope["app"], exc)
        if render is None:
            raise
        result = render(request, exc)
        response = await result if inspect.isawaitable(result) else result
    await response(scope, receive, send)


def _exception_handler(app: Any, exc: Exception) -> Callable[..., Any] | None:
    """The app's handler for ``exc`` (the nearest class of its MRO that has one), as the
    router's exception middleware would pick it."""
    handlers = app.exception_handlers
    for cls in type(exc).__mro__:
        if cls is Exception:  # a catch-all handler is the server error middleware's, outside
            return None
        if cls in handlers:
            return handlers[cls]
    return None
