"""The FastAPI application factory and the error rendering shared by every route."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse

from annostream import __version__
from annostream.errors import AnnostreamError, InvalidInput
from annostream.store import Store

if TYPE_CHECKING:
    from annostream.server.limits import BodyLimits


class FastJSONResponse(JSONResponse):
    """JSON rendered by orjson: several times faster than the standard library on items."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def create_app(store: Store, signing_secret: bytes | None = None, limits: BodyLimits | None = None,
               thumbnail_dir: Path | None = None) -> FastAPI:
    """An app serving ``store``. It keeps no state of its own beyond the store handle, the
    secret that signs blob URLs (random per process when none is given), the body size
    caps (``limits``; from the environment when none are given) and the folder of the
    explorer's thumbnail cache (a temporary one when none is given)."""
    from annostream.server import signing, web
    from annostream.server.limits import BodyLimits

    app = FastAPI(title="annostream", version=__version__, default_response_class=FastJSONResponse)
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

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, str | int]:
        """Liveness, and which server process answered (behind one port there are several)."""
        return {"status": "ok", "version": __version__, "pid": os.getpid()}

    @app.get("/", tags=["meta"], response_model=None)
    def root(request: Request) -> RedirectResponse | dict[str, str]:
        """Browsers go to the explorer; programs get a JSON index."""
        if "text/html" in request.headers.get("accept", ""):
            return RedirectResponse("/explore/", status_code=303)
        return {"name": "annostream", "version": __version__, "api": "/api/v2", "explore": "/explore/"}

    from annostream.server import api_v2, diffgram_compat

    app.include_router(api_v2.build_router())
    diffgram_compat.install(app)
    web.install(app, thumbnail_dir)
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
    thumbnails = Path(data_dir) / "thumbnails" if data_dir else None
    return create_app(store, signing.load_secret(data_dir), thumbnail_dir=thumbnails)
