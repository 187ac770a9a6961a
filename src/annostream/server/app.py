"""The FastAPI application factory and the error rendering shared by every route.

Shutdown is graceful: on SIGTERM (or SIGINT) uvicorn stops accepting connections and lets
requests in flight finish, and ``store.closing`` is set at once so that long polls
(``/changes``) answer normally now instead of holding the shutdown for their whole wait.
A database that is unreachable for a moment (PostgreSQL restarting) is a 503 with
``Retry-After``, which clients retry, never a 500.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError

from annostream import __version__
from annostream.errors import AnnostreamError, InvalidInput, TransportError
from annostream.store import Store

if TYPE_CHECKING:
    from annostream.server.limits import BodyLimits


class FastJSONResponse(JSONResponse):
    """JSON rendered by orjson: several times faster than the standard library on items."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def create_app(store: Store, signing_secret: bytes | None = None, limits: BodyLimits | None = None) -> FastAPI:
    """An app serving ``store``. It keeps no state of its own beyond the store handle, the
    secret that signs blob URLs (random per process when none is given) and the body size
    caps (``limits``; from the environment when none are given)."""
    from annostream.server import signing
    from annostream.server.limits import BodyLimits

    stopping = store.closing

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        _chain_stop_signals(stopping)
        yield

    app = FastAPI(title="annostream", version=__version__, default_response_class=FastJSONResponse,
                  lifespan=lifespan)
    app.state.store = store
    app.state.signing_secret = signing_secret or signing.load_secret(None)
    app.state.limits = limits or BodyLimits.from_env()

    @app.exception_handler(AnnostreamError)
    async def _annostream_error(_request: Request, exc: AnnostreamError) -> FastJSONResponse:
        return FastJSONResponse(exc.to_dict(), status_code=exc.status)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _database_unavailable(_request: Request, exc: Exception) -> FastJSONResponse:
        first = str(getattr(exc, "orig", exc)).splitlines()[0] if str(exc) else type(exc).__name__
        err = TransportError(f"database unavailable: {first}", {"retry_after": 1})
        return FastJSONResponse(err.to_dict(), status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> FastJSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(p) for p in first["loc"] if p not in ("body", "query", "path"))
        err = InvalidInput(f"{field or 'request'}: {first['msg']}", {"field": field})
        return FastJSONResponse(err.to_dict(), status_code=422)

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, str | int]:
        """Liveness, and which server process answered (behind one port there are several)."""
        return {"status": "ok", "version": __version__, "pid": os.getpid()}

    @app.get("/readyz", tags=["meta"])
    def readyz() -> FastJSONResponse:
        """Readiness: the database and the blob store answer, and the server is not stopping.

        503 with the reasons otherwise (a load balancer sends traffic elsewhere meanwhile).
        """
        from annostream.service.health import readiness

        reasons = (["shutting down"] if stopping.is_set() else []) + readiness(store)
        if reasons:
            return FastJSONResponse({"status": "not ready", "reasons": reasons}, status_code=503,
                                    headers={"Retry-After": "1"})
        return FastJSONResponse({"status": "ready", "pid": os.getpid()})

    from annostream.server import api_v2, diffgram_compat

    app.include_router(api_v2.build_router())
    diffgram_compat.install(app)
    return app


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
    """The app for ``ANNOSTREAM_DATA`` / ``ANNOSTREAM_DB`` / ``ANNOSTREAM_BLOBS`` (uvicorn factory).

    Each server process opens its own store, so ``--workers N`` shares nothing but the
    database and the blob store.
    """
    from annostream.server import signing

    data_dir = os.environ.get("ANNOSTREAM_DATA") or None
    store = Store.open(data_dir,
                       db_url=os.environ.get("ANNOSTREAM_DB") or None,
                       blobs_url=os.environ.get("ANNOSTREAM_BLOBS") or None)
    return create_app(store, signing.load_secret(data_dir))
