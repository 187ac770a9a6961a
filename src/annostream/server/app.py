"""The FastAPI application factory and the error rendering shared by every route.

Every error, including an unknown path or method, answers ``{"error": {"code", "message",
"detail"}}``. The API docs (/docs, /redoc) load their scripts from this server, not a CDN.

Shutdown is graceful: on SIGTERM (or SIGINT) uvicorn stops accepting connections and lets
requests in flight finish, and ``store.closing`` is set at once so that long polls
(``/changes``) answer normally now instead of holding the shutdown for their whole wait.
A database that is unreachable for a moment (PostgreSQL restarting) is a 503 with
``Retry-After``, which clients retry, never a 500.
"""

from __future__ import annotations

import gc
import ipaddress
import os
import re
import signal
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from annostream import __version__
from annostream.errors import (
    AnnostreamError,
    Forbidden,
    InvalidInput,
    NotFound,
    TooCostly,
    TooManyRequests,
    TransportError,
    Unauthorized,
)
from annostream.limits import LIMITS
from annostream.store import Store, timings
from annostream.store.db import is_timeout

if TYPE_CHECKING:
    from annostream.server.limits import BodyLimits


class FastJSONResponse(JSONResponse):
    """JSON rendered by orjson: several times faster than the standard library on items."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def public_base_url(request: Request) -> str:
    """Where clients reach this server, for absolute links (signed blob URLs): the configured
    public URL, else the address the server is bound to; never the request's Host header."""
    configured = request.app.state.public_url
    if configured:
        return configured
    host, port = request.scope.get("server") or ("127.0.0.1", 80)
    return f"{request.url.scheme}://{host}:{port}"


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the app's OpenAPI document declares for ``path`` (HEAD with GET)."""
    table = getattr(app.state, "path_methods", None)
    if table is None:
        table = []
        for template, operations in app.openapi()["paths"].items():
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
            methods = {m.upper() for m in operations} | ({"HEAD"} if "get" in operations else set())
            table.append((re.compile(pattern + "$"), methods))
        app.state.path_methods = table
    return sorted({m for pattern, methods in table if pattern.match(path) for m in methods})


def create_app(
    store: Store,
    signing_secret: bytes | None = None,
    limits: BodyLimits | None = None,
    *,
    thumbnail_dir: Path | None = None,
    public_url: str | None = None,
    cors_origins: Sequence[str] = (),
) -> FastAPI:
    """An app serving ``store``. It keeps no state of its own beyond the store handle, the
    secret that signs blob URLs (random per process when none is given), the body size
    caps (``limits``; from the environment when none are given), the folder of the
    explorer's thumbnail cache (a temporary one when none is given), the public URL that
    absolute links start with, and the per-caller long-poll counts.

    CORS is closed unless ``cors_origins`` names the origins a browser may call from.
    """
    from annostream.server import signing, web
    from annostream.server.limits import BodyLimits

    stopping = store.closing

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        _chain_stop_signals(stopping)
        yield

    app = FastAPIOffline(
        title="annostream", version=__version__, default_response_class=FastJSONResponse, lifespan=lifespan
    )
    app.state.store = store
    app.state.signing_secret = signing_secret or signing.load_secret(None)
    app.state.public_url = public_url.rstrip("/") if public_url else None
    app.state.long_polls = {}
    from annostream.server.hot import HotRoutes

    app.add_middleware(HotRoutes, store=store)  # first added: the innermost, inside CORS and timings
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["X-Count", "X-Revision", "ETag", "Retry-After"],
        )
    app.state.limits = limits or BodyLimits.from_env()

    @app.exception_handler(AnnostreamError)
    async def _annostream_error(_request: Request, exc: AnnostreamError) -> FastJSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyRequests) else None
        if isinstance(exc, Unauthorized):
            headers = {"WWW-Authenticate": 'Basic realm="annostream", Bearer'}
        return FastJSONResponse(exc.to_dict(), status_code=exc.status, headers=headers)

    @app.exception_handler(DBAPIError)
    async def _database_error(_request: Request, exc: DBAPIError) -> FastJSONResponse:
        """A statement past its timeout is the caller's query (400); a database that cannot be
        reached is the server's moment (503, retry); anything else is a bug and propagates."""
        if is_timeout(exc):
            limit = LIMITS.statement_timeout_s
            err: AnnostreamError = TooCostly(
                f"the query ran past this server's statement timeout ({limit} s); narrow it or split it",
                {"timeout_s": limit},
            )
            return FastJSONResponse(err.to_dict(), status_code=err.status)
        if isinstance(exc, OperationalError | InterfaceError):
            first = str(getattr(exc, "orig", exc)).splitlines()[0] if str(exc) else type(exc).__name__
            err = TransportError(f"database unavailable: {first}", {"retry_after": 1})
            return FastJSONResponse(err.to_dict(), status_code=503, headers={"Retry-After": "1"})
        raise exc

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> FastJSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(p) for p in first["loc"] if p not in ("body", "query", "path"))
        err = InvalidInput(f"{field or 'request'}: {first['msg']}", {"field": field})
        return FastJSONResponse(err.to_dict(), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> FastJSONResponse:
        """Routing errors (unknown path, wrong method) in the same shape as every other error."""
        if exc.status_code == 404:
            err: AnnostreamError = NotFound(
                f"no route {request.url.path}; the index of routes is at /", {"path": request.url.path}
            )
        else:
            err = AnnostreamError(str(exc.detail), {"path": request.url.path, "method": request.method})
            err.code = {405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only those of one route
            headers["Allow"] = ", ".join(allowed_methods(app, request.url.path))
        return FastJSONResponse(err.to_dict(), status_code=exc.status_code, headers=headers)

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, str | int]:
        """Liveness, and which server process answered (behind one port there are several)."""
        return {"status": "ok", "version": __version__, "pid": os.getpid()}

    @app.get("/", tags=["meta"], response_model=None)
    def root(request: Request) -> RedirectResponse | dict[str, Any]:
        """Browsers go to the explorer; programs get a JSON index of where to go from here."""
        if "text/html" in request.headers.get("accept", ""):
            return RedirectResponse("/explore/", status_code=303)
        base = str(request.base_url).rstrip("/")
        return {
            "name": "annostream",
            "version": __version__,
            "api": "/api/v2",
            "explore": "/explore/",
            "links": {
                "docs": f"{base}/docs",
                "redoc": f"{base}/redoc",
                "explore": f"{base}/explore/",
                "openapi": f"{base}/openapi.json",
                "health": f"{base}/healthz",
                "ready": f"{base}/readyz",
                "projects": f"{base}/api/v2/projects",
            },
        }

    @app.get("/readyz", tags=["meta"])
    def readyz() -> FastJSONResponse:
        """Readiness: the database and the blob store answer, and the server is not stopping.

        503 with the reasons otherwise (a load balancer sends traffic elsewhere meanwhile).
        """
        from annostream.service.health import readiness

        reasons = (["shutting down"] if stopping.is_set() else []) + readiness(store)
        if reasons:
            return FastJSONResponse(
                {"status": "not ready", "reasons": reasons}, status_code=503, headers={"Retry-After": "1"}
            )
        return FastJSONResponse({"status": "ready", "pid": os.getpid()})

    if timings.ENABLED:
        _install_timings(app)

    from annostream.server import api_v2, diffgram_compat

    app.include_router(api_v2.build_router())
    diffgram_compat.install(app)
    web.install(app, thumbnail_dir)
    return app


class _RequestTimer:
    """ASGI middleware: each HTTP request's time to its last body message, as ``request``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()

        async def timed_send(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                timings.add("request", time.perf_counter() - t0)

        await self.app(scope, receive, timed_send)


def _install_timings(app: FastAPI) -> None:
    """``GET /debug/timings`` (this process's phase sums, see store/timings.py) and the
    ``request`` phase, timed from a request's start to its last byte sent. Only mounted when
    ``ANNOSTREAM_TIMINGS=1``: a server started without it has neither.

    The sums cover every project the process serves and no key is asked for, so the route
    answers only a peer on loopback (the benchmark beside the server); any other peer gets 403
    and learns nothing of other teams' traffic. (Behind a reverse proxy on the same host every
    peer is loopback: leave timings off there.)"""

    app.add_middleware(_RequestTimer)

    @app.get("/debug/timings", tags=["meta"], include_in_schema=False)
    def debug_timings(request: Request) -> dict[str, dict[str, float]]:
        if not _on_loopback(request):
            raise Forbidden("/debug/timings answers only clients on the server's loopback")
        return timings.snapshot()


def _on_loopback(request: Request) -> bool:
    """Whether the TCP peer is a loopback address (not a name: a name is not a peer)."""
    try:
        return request.client is not None and ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


def _chain_stop_signals(stopping: threading.Event) -> None:
    """Set ``stopping`` on SIGTERM/SIGINT, then let the server's own handler run as before.

    Called at startup, after the server installed its handlers (main thread only).
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            stopping.set()
            if callable(previous):
                previous(signum, frame)

        signal.signal(sig, handler)


def app_from_env() -> FastAPI:
    """The app for ``ANNOSTREAM_DATA`` / ``ANNOSTREAM_DB`` / ``ANNOSTREAM_BLOBS`` (uvicorn factory),
    with ``ANNOSTREAM_PUBLIC_URL``, ``ANNOSTREAM_CORS_ORIGINS`` (comma separated) and the
    limits of ``annostream.limits``.

    Each server process opens its own store, so ``--workers N`` shares nothing but the
    database and the blob store.
    """
    from annostream.server import signing

    data_dir = os.environ.get("ANNOSTREAM_DATA") or None
    store = Store.open(
        data_dir,
        db_url=os.environ.get("ANNOSTREAM_DB") or None,
        blobs_url=os.environ.get("ANNOSTREAM_BLOBS") or None,
        statement_timeout_s=LIMITS.statement_timeout_s,
        query_budget=LIMITS.query_budget,
    )
    thumbnails = Path(data_dir) / "thumbnails" if data_dir else None
    origins = [o.strip() for o in os.environ.get("ANNOSTREAM_CORS_ORIGINS", "").split(",") if o.strip()]
    app = create_app(
        store,
        signing.load_secret(data_dir),
        thumbnail_dir=thumbnails,
        public_url=os.environ.get("ANNOSTREAM_PUBLIC_URL") or None,
        cors_origins=origins,
    )
    # What a serving process holds from startup (modules, the app, its routes and models) is
    # kept out of the cycle collector's full passes, which otherwise walk all of it a few
    # times per thousand requests: about a third of the CPU of serving an items batch.
    gc.collect()
    gc.freeze()
    return app
