"""The hot routes (``items:batch``) answered by a plain ASGI handler in front of FastAPI's router.

Streaming and ``ds[i]`` are one ``items:batch`` request per batch or item; FastAPI's routing
(every route's pattern tried in turn) and its per-request machinery cost more CPU than
authorising and reading a one-item batch. This middleware matches the hot operations' method
and path itself and calls the very handler the router would (``api_v2.endpoint``: the same
declaration, policy before the body, body caps, service function and reply), rendering any
error with the app's own exception handlers, so the answer is the same byte for byte.

Invariants: it is the innermost middleware (CORS, timings and the other middleware still
wrap it); anything it does not match (another method, path or operation) goes to the app
unchanged; an exception without a handler propagates as it would from the router (500).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Coroutine
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from annostream.operations import API_PREFIX, OPERATIONS

HOT_OPERATIONS = ("items_batch",)

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class HotRoutes:
    """ASGI middleware: requests for ``HOT_OPERATIONS`` go straight to their handlers."""

    def __init__(self, app: ASGIApp) -> None:
        from annostream.server.api_v2 import endpoint

        self.app = app
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        for name in HOT_OPERATIONS:
            op = OPERATIONS[name]
            pattern, _, _ = compile_path(API_PREFIX + op.path)
            self.routes.append((op.method, pattern, endpoint(op)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            for method, pattern, handler in self.routes:
                if scope["method"] != method:
                    continue
                match = pattern.match(scope["path"])
                if match is not None:
                    scope["path_params"] = match.groupdict()
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
