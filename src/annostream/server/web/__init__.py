"""The explorer: server-rendered pages under ``/explore/`` over the service layer.

Templates and static assets ship in this package (no front-end build, nothing from a CDN);
``install`` adds the pages, the assets and the thumbnail cache folder to an app.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles


def install(app: FastAPI, thumbnail_dir: Path | None = None) -> None:
    """Serve the explorer from ``app``; thumbnails are cached in ``thumbnail_dir`` (a fresh
    temporary folder when None)."""
    from annostream.server.web import pages

    app.state.thumbnail_dir = Path(thumbnail_dir or tempfile.mkdtemp(prefix="annostream-thumbs-"))
    app.state.thumbnail_dir.mkdir(parents=True, exist_ok=True)
    app.include_router(pages.router)
    app.mount(
        "/explore/static", StaticFiles(directory=Path(__file__).parent / "static"), name="explore-static"
    )
