"""The explorer's pages, ``/explore/``: server-rendered views over the service functions.

Invariants: every page is a GET that reads (the key form is the only POST, and it writes
nothing but a cookie); every page authorises through ``access.authorize_page``, as the API
operation whose data it shows, before it reads; every piece of user text reaches HTML
through Jinja's autoescape (overlay SVG is escaped by ``annostream.overlay``); a grid pins
the revision of its first page and every later page (``after``, keyset) reads that same
revision.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any, cast
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader
from markupsafe import Markup

from annostream import overlay
from annostream.errors import (
    AnnostreamError,
    Forbidden,
    InvalidInput,
    NotFound,
    QueryError,
    Unauthorized,
)
from annostream.operations import OPERATIONS
from annostream.schema import Item
from annostream.server.replies import picture_response
from annostream.server.web import access, thumbs
from annostream.service import changes, datasets, derived, dispatch, items, labels, projects, revisions
from annostream.service.projects import ProjectRef
from annostream.service.video import check_frame_number, interpolate_tracks, on_frame
from annostream.store import Store

router = APIRouter(prefix="/explore", include_in_schema=False)
PAGE = 48
GRID_SIZE = 256
SCRUB_SIZE = 1024  # the size of the frames a video's page shows (one of get_frame's sizes)
CHANGES_PAGE = 200
QueryText = Annotated[str, Query(max_length=10_000)]

_ENV = Environment(
    loader=PackageLoader("annostream.server.web", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self' data:; style-src 'self'; "
        "script-src 'self'; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
IMMUTABLE = "max-age=31536000, immutable"


def _store(request: Request) -> Store:
    return request.app.state.store


def _url(path: str, **params: Any) -> str:
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return f"{path}?{urlencode(kept)}" if kept else path


def render(
    name: str, status: int = 200, headers: dict[str, str] | None = None, **context: Any
) -> HTMLResponse:
    html = _ENV.get_template(name).render(url=_url, **context)
    return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


def _refused(request: Request, project: str, exc: AnnostreamError) -> HTMLResponse:
    """The page for an error: the key prompt for 401/403 on a project, else a plain message."""
    if isinstance(exc, (Unauthorized, Forbidden)):
        try:
            access.project_path(project)
        except NotFound as missing:
            return render("error.html", missing.status, project=None, message=missing.message)
        response = render("key.html", exc.status, project=project, message=exc.message)
        if isinstance(exc, Unauthorized) and request.cookies.get(access.KEY_COOKIE):
            access.forget_key(response, request, project)
        return response
    return render("error.html", exc.status, project=project, message=exc.message)


def _as_of(store: Store, ref: ProjectRef, as_of: str | None) -> int | None:
    text = (as_of or "").strip()
    if not text or text == "head":
        return None
    if text.lstrip("-").isdigit() and int(text) < 0:
        raise InvalidInput("as_of: a revision is a number >= 0 or a tag name", {"field": "as_of"})
    return revisions.resolve_as_of(store, ref, text)


def _colors(store: Store, ref: ProjectRef, rev: int | None) -> tuple[list[dict[str, Any]], dict[int, str]]:
    found = labels.list_labels(store, ref, rev)
    colors = {lab["id"]: overlay.label_color(lab["id"], lab.get("color")) for lab in found}
    return [{**lab, "swatch": colors[lab["id"]]} for lab in found], colors


def _is_video(item: Item) -> bool:
    """Whether the file is a probed video whose frames can be shown (``get_frame``)."""
    f = item["file"]
    return f["type"] == "video" and bool(f["sha256"]) and bool(f["frame_count"]) and bool(f["width"])


def _tile(project: str, item: Item, colors: dict[int, str], rev: int) -> dict[str, Any]:
    """A grid tile: an image's thumbnail, or a video's first frame, with the instances on it."""
    f = item["file"]
    picture = bool(f["sha256"]) and (f["content_type"] or "").startswith("image/") and f["width"]
    href = f"/explore/p/{project}/thumb/{GRID_SIZE}/{f['sha256']}" if picture else None
    drawn = cast(list[dict[str, Any]], item["instances"])
    if _is_video(item):
        href = _url(f"/explore/p/{project}/frame/{f['sha256']}", number=0, size=GRID_SIZE)
        picture, drawn = True, on_frame(drawn, 0)
    return {
        "id": item["id"],
        "name": f["name"],
        "type": f["type"],
        "text": f["text"],
        "instances": len(item["instances"]),
        "svg": Markup(overlay.svg(f["width"], f["height"], drawn, href, colors=colors)) if picture else None,
        "link": _url(f"/explore/p/{project}/f/{item['id']}", as_of=rev),
    }


# --- index and project --------------------------------------------------------------------


@router.get("/")
def index(request: Request) -> HTMLResponse:
    try:
        found = projects.list_projects(_store(request), access.page_principal(request))
    except AnnostreamError as exc:
        return render("error.html", exc.status, project=None, message=exc.message)
    return render("index.html", projects=found)


@router.get("/open")
def open_project(project: Annotated[str, Query(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,99}$")]) -> Response:
    """The index's "open a project by name" form: to that project's page (its key prompt)."""
    return RedirectResponse(access.project_path(project), status_code=303)


@router.get("/p/{project}/")
def project_page(request: Request, project: str) -> HTMLResponse:
    store = _store(request)
    try:
        ref = access.authorize_page(request, project, "list_datasets")
        found = datasets.list_datasets(store, ref)
        tags = revisions.list_tags(store, ref)
        head = labels.current_revision(store, ref)
        label_list, _ = _colors(store, ref, None)
    except AnnostreamError as exc:
        return _refused(request, project, exc)
    return render(
        "project.html",
        project=ref,
        datasets=found,
        tags=tags,
        head=head,
        labels=label_list,
        has_key=bool(request.cookies.get(access.KEY_COOKIE)),
    )


@router.post("/p/{project}/key")
def give_key(
    request: Request,
    project: str,
    client_id: Annotated[str, Form(max_length=200)],
    client_secret: Annotated[str, Form(max_length=200)],
) -> Response:
    """The key prompt's form: a key that reads this project is kept in the cookie."""
    try:
        access.check_same_origin(request)
        value = access.verify_key(request, project, client_id, client_secret)
    except AnnostreamError as exc:
        return render("key.html", exc.status, project=project, message=exc.message)
    response = RedirectResponse(access.project_path(project), status_code=303)
    access.keep_key(response, request, project, value)
    return response


@router.post("/p/{project}/forget")
def forget(request: Request, project: str) -> Response:
    try:
        access.check_same_origin(request)
        access.project_path(project)
    except AnnostreamError as exc:
        return render("error.html", exc.status, project=None, message=exc.message)
    response = RedirectResponse("/explore/", status_code=303)
    access.forget_key(response, request, project)
    return response


# --- a dataset: the grid, and what changed --------------------------------------------------


@router.get("/p/{project}/d/{dataset:path}")
def grid(
    request: Request,
    project: str,
    dataset: str,
    q: QueryText = "",
    as_of: str | None = None,
    after: int | None = None,
    fragment: bool = False,
) -> HTMLResponse:
    """Thumbnails of a slice with their instances; ``fragment=1`` answers one page of tiles
    (the infinite scroll), with the next page's URL in ``X-Next-Page``."""
    store = _store(request)
    try:
        ref = access.authorize_page(request, project, "slice_count")
        rev = _as_of(store, ref, as_of)
        ds = datasets.get_dataset(store, ref, dataset, rev)
        label_list, colors = _colors(store, ref, rev)
        tags = revisions.list_tags(store, ref)
        head = labels.current_revision(store, ref)
    except AnnostreamError as exc:
        return _refused(request, project, exc)
    base: dict[str, Any] = {
        "project": ref,
        "dataset": ds.name,
        "q": q,
        "as_of": as_of or "",
        "labels": label_list,
        "tags": tags,
        "head": head,
    }
    try:
        count, pinned = datasets.slice_count(store, ds, q, rev)
        page, _ = items.page_items(store, ds, query=q, as_of=pinned, after=after, limit=PAGE)
    except QueryError as exc:
        detail = exc.detail if isinstance(exc.detail, dict) else {}
        line, column = int(detail.get("line") or 1), int(detail.get("column") or 1)
        text = (q.splitlines() or [""])[min(line, max(len(q.splitlines()), 1)) - 1]
        return render(
            "dataset.html",
            400,
            **base,
            error={
                "message": exc.message,
                "line": line,
                "column": column,
                "text": text,
                "caret": " " * (column - 1) + "^",
            },
        )
    except AnnostreamError as exc:
        return _refused(request, project, exc)
    tiles = [_tile(ref.string_id, item, colors, pinned) for item in page]
    path = f"/explore/p/{ref.string_id}/d/{quote(ds.name)}"
    next_url = _url(path, q=q, as_of=pinned, after=page[-1]["id"], fragment=1) if len(page) == PAGE else None
    if fragment:
        return render("tiles.html", tiles=tiles, headers={"X-Next-Page": next_url or ""})
    return render(
        "dataset.html",
        **base,
        count=count,
        revision=pinned,
        tiles=tiles,
        next_url=next_url,
        next_page=next_url and _url(path, q=q, as_of=pinned, after=page[-1]["id"]),
        changes_url=_url(f"/explore/p/{ref.string_id}/changes", d=ds.name, q=q),
    )


@router.get("/p/{project}/changes")
def changed_since(
    request: Request, project: str, d: str, since: str | None = None, q: QueryText = ""
) -> HTMLResponse:
    """The change feed of a dataset (and query) after a revision or tag, one page of it."""
    store = _store(request)
    try:
        ref = access.authorize_page(request, project, "changes")
        tags = revisions.list_tags(store, ref)
        start = _as_of(store, ref, since) if since else None
        page = (
            changes.changes(store, ref, start, dataset=d, query=q or None, limit=CHANGES_PAGE)
            if start is not None
            else None
        )
        label_list, colors = _colors(store, ref, None)
    except QueryError as exc:
        return render("error.html", 400, project=project, message=exc.message)
    except AnnostreamError as exc:
        return _refused(request, project, exc)
    events: list[dict[str, Any]] = []
    if page is not None:
        by_rev: dict[int, list[int]] = defaultdict(list)
        for e in page["events"]:
            if e["kind"] != "file_removed":
                by_rev[e["rev"]].append(e["file_id"])
        tiles = {}
        for rev, ids in by_rev.items():
            found, _ = items.read_items(store, ref, sorted(set(ids)), rev)
            tiles.update({(rev, it["id"]): _tile(ref.string_id, it, colors, rev) for it in found})
        events = [
            {
                **e,
                "tile": tiles.get((e["rev"], e["file_id"])),
                "link": _url(f"/explore/p/{ref.string_id}/f/{e['file_id']}", as_of=e["rev"] - 1),
            }
            for e in page["events"]
        ]
    more = (
        _url(f"/explore/p/{ref.string_id}/changes", d=d, q=q, since=page["cursor"])
        if page is not None and page["cursor"] < page["head"]
        else None
    )
    return render(
        "changes.html",
        project=ref,
        dataset=d,
        q=q,
        since=since or "",
        tags=tags,
        page=page,
        events=events,
        labels=label_list,
        more=more,
    )


# --- one file -------------------------------------------------------------------------------


def _frame_number(frame: str | None, item: Item) -> int | None:
    """The frame a video's page opens at (0 by default); None for a file that is no video."""
    f = item["file"]
    if not _is_video(item):
        return None
    text = (frame or "0").strip()
    if not text.isdigit() or len(text) > 10:
        raise InvalidInput("frame: a frame number is a whole number >= 0", {"field": "frame"})
    check_frame_number(int(text), f["frame_count"] or 0, item["id"])
    return int(text)


@router.get("/p/{project}/f/{file_id}")
def file_page(
    request: Request, project: str, file_id: int, as_of: str | None = None, frame: str | None = None
) -> HTMLResponse:
    """One file: its picture with its instances drawn, or for a video a frame scrubber (the
    frame from ``get_frame``, the instances of that frame drawn over it)."""
    store = _store(request)
    try:
        ref = access.authorize_page(request, project, "items_batch")
        rev = _as_of(store, ref, as_of)
        found, pinned = items.read_items(store, ref, [file_id], rev)
        label_list, colors = _colors(store, ref, pinned)
        shown_frame = _frame_number(frame, found[0])
    except AnnostreamError as exc:
        return _refused(request, project, exc)
    item = found[0]
    f = item["file"]
    picture = bool(f["sha256"]) and (f["content_type"] or "").startswith("image/") and f["width"]
    href = f"/explore/p/{ref.string_id}/blob/{f['sha256']}" if picture else None
    frame_src, drawn = None, cast(list[dict[str, Any]], item["instances"])
    if shown_frame is not None:
        frame_src = _url(f"/explore/p/{ref.string_id}/frame/{f['sha256']}", size=SCRUB_SIZE) + "&number="
        href, picture = f"{frame_src}{shown_frame}", True
        drawn = interpolate_tracks(drawn)  # as ds.frames(interpolate=True) reads them; hidden at first
    attributes: dict[str, Any] = {}
    for inst in item["instances"]:
        if inst["type"] == "global":
            attributes.update(inst["attributes"])
    return render(
        "file.html",
        project=ref,
        item=item,
        file=f,
        revision=pinned,
        labels=label_list,
        svg=Markup(
            overlay.svg(
                f["width"],
                f["height"],
                drawn,
                href,
                colors=colors,
                css_class="overlay full",
                frame=shown_frame,
            )
        )
        if picture
        else None,
        attributes=attributes,
        colors=colors,
        frame=shown_frame,
        frame_src=frame_src,
        on_frame=sum(
            1 for s in overlay.shapes(item["instances"]) if shown_frame is not None and s.frame == shown_frame
        ),
        interpolated=len(drawn) - len(item["instances"]),
        on_events=sum(
            1
            for i in item["instances"]
            if i["type"] == "event" and i["geometry"]["start"] <= (shown_frame or 0) <= i["geometry"]["end"]
        ),
        timeline=Markup(
            overlay.timeline(item["instances"], f["frame_count"] or 0, colors=colors, frame=shown_frame)
        )
        if shown_frame is not None
        else None,
    )


# --- pictures ---------------------------------------------------------------------------------


def _blob_for_page(request: Request, project: str, sha256: str) -> tuple[ProjectRef, dict[str, Any]]:
    ref = access.authorize_page(request, project, "get_blob")
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise NotFound("no such blob", {"sha256": sha256[:80]})
    return ref, items.blob_info(_store(request), ref, sha256)


def _cache_headers(ref: ProjectRef, sha256: str) -> dict[str, str]:
    scope = "public" if ref.is_public else "private"
    return {
        "Cache-Control": f"{scope}, {IMMUTABLE}",
        "ETag": f'"{sha256}"',
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }


@router.get("/p/{project}/thumb/{size}/{sha256}")
def thumbnail(request: Request, project: str, size: int, sha256: str) -> Response:
    """A JPEG thumbnail of one of the project's images, made once per (blob, size)."""
    try:
        thumbs.check_size(size)
        ref, info = _blob_for_page(request, project, sha256)
        if not (info["content_type"] or "").startswith("image/"):
            raise NotFound("this file has no picture to make a thumbnail of", {"sha256": sha256})
        data, made = thumbs.thumbnail(_store(request), request.app.state.thumbnail_dir, sha256, size)
    except AnnostreamError as exc:
        return Response(exc.message, status_code=exc.status, media_type="text/plain")
    return Response(
        data,
        media_type=thumbs.MEDIA_TYPE,
        headers={**_cache_headers(ref, sha256), "X-Thumbnail": "made" if made else "cached"},
    )


@router.get("/p/{project}/frame/{sha256}")
def frame(request: Request, project: str, sha256: str, number: str = "0", size: str = "1024") -> Response:
    """One frame of a video of the project as a JPEG (the file page's scrubber): the API's
    ``get_frame``, authorised as it and run by its one service function."""
    op = OPERATIONS["get_frame"]
    try:
        ref = access.authorize_page(request, project, op.name)
        args = op.bind({"project": project, "sha256": sha256, "number": number, "size": size})
        picture: derived.Picture = dispatch.run(_store(request), ref, op, args)
    except AnnostreamError as exc:
        return Response(exc.message, status_code=exc.status, media_type="text/plain")
    scope = "public" if ref.is_public else "private"
    response = picture_response(picture, request, f"{scope}, {IMMUTABLE}")
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@router.get("/p/{project}/blob/{sha256}")
def image(request: Request, project: str, sha256: str) -> Response:
    """The full image of a file page (pictures only: nothing else is served under /explore)."""
    store = _store(request)
    try:
        ref, info = _blob_for_page(request, project, sha256)
        if not (info["content_type"] or "").startswith("image/") or "svg" in info["content_type"]:
            raise NotFound("this file has no picture to show", {"sha256": sha256})
    except AnnostreamError as exc:
        return Response(exc.message, status_code=exc.status, media_type="text/plain")
    headers = _cache_headers(ref, sha256)
    local: Path | None = store.blobs.local_path(sha256)
    if local is not None:
        return FileResponse(local, media_type=info["content_type"], headers=headers)
    return Response(store.blobs.get(sha256), media_type=info["content_type"], headers=headers)
