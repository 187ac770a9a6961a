"""The FastAPI application factory and the error rendering shared by every route.

Every error, including an unknown path or method, answers ``{"error": {"code", "message",
"detail"}}``. The API docs (/docs, /redoc) load their scripts from this server, not a CDN.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from annostream import __version__
from annostream.errors import AnnostreamError, InvalidInput, NotFound
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

    app = FastAPIOffline(title="annostream", version=__version__, default_response_class=FastJSONResponse)
    app.state.store = store
    app.state.signing_secret = signing_secret or signing.load_secret(None)
    app.state.limits = limits or BodyLimits.from_env()

    @app.exception_handler(AnnostreamError)
    async def _annostream_error(_request: Request, exc: AnnostreamError) -> FastJSONResponse:
        return FastJSONResponse(exc.to_dict(), status_code=exc.status)

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
            err: AnnostreamError = NotFound(f"no route {request.url.path}; the index of routes is at /",
                                            {"path": request.url.path})
        else:
            err = AnnostreamError(str(exc.detail), {"path": request.url.path, "method": request.method})
            err.code = {405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return FastJSONResponse(err.to_dict(), status_code=exc.status_code, headers=exc.headers)

    @app.get("/", tags=["meta"])
    def index(request: Request) -> dict[str, Any]:
        """Where to go from here: the API docs, the OpenAPI schema and the main routes."""
        base = str(request.base_url).rstrip("/")
        return {"name": "annostream", "version": __version__,
                "links": {"docs": f"{base}/docs", "redoc": f"{base}/redoc",
                          "openapi": f"{base}/openapi.json", "health": f"{base}/healthz",
                          "projects": f"{base}/api/v2/projects"}}

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, str | int]:
        """Liveness, and which server process answered (behind one port there are several)."""
        return {"status": "ok", "version": __version__, "pid": os.getpid()}

    from annostream.server import api_v2, diffgram_compat

    app.include_router(api_v2.build_router())
    diffgram_compat.install(app)
    return app


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
