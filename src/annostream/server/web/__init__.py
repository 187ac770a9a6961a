"""The explorer: server-rendered pages under ``/explore/`` over the service layer.

Templates and static assets ship in this package (no front-end build, nothing from a CDN);
``install`` adds the pages, the assets and the cache folder of derived pictures (thumbnails,
video frames) to an app.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles


def install(app: FastAPI, thumbnail_dir: Path | None = None) -> None:
    """Serve the explorer from ``app``; thumbnails and video frames are cached in
    ``thumbnail_dir`` (the store's derived-picture folder when None: a fresh temporary one
    unless set)."""
    from annostream.server.web import pages
    from annostream.service import derived

    store = app.state.store
    if thumbnail_dir is not None:
        store.derived_dir = Path(thumbnail_dir)
    app.state.thumbnail_dir = derived.folder(store)
    app.include_router(pages.router)
    app.mount(
        "/explore/static", StaticFiles(directory=Path(__file__).parent / "static"), name="explore-static"
    )
