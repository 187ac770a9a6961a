"""Who may see an explorer page, and the one write a browser makes: handing over a key.

Invariants: a page authorises through ``projects.authorize`` with the principal that
``auth.page_principal`` makes (the API's own path); the key a person types is checked by
``authenticate`` and ``authorize`` before it is kept, and kept only in an HttpOnly,
SameSite=Strict cookie scoped to that project's pages; the form that sets or clears it is
refused unless the request comes from this very origin (Origin, else Referer), so another
site can neither log a browser in with its own key nor log it out.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import Response

from annostream.errors import Forbidden, NotFound
from annostream.schema import ProjectCreate
from annostream.server.auth import KEY_COOKIE, page_principal
from annostream.service import projects
from annostream.service.projects import ProjectRef

_KEY_PART = re.compile(r"^[A-Za-z0-9_\-]{1,200}$")
_PROJECT = re.compile(ProjectCreate.model_fields["string_id"].metadata[0].pattern)
COOKIE_MAX_AGE = 30 * 86400


def project_path(project: str) -> str:
    """The URL path under which a project's pages (and its key cookie) live; only a name a
    project can have (so nothing else can reach a Set-Cookie attribute)."""
    if not _PROJECT.match(project):
        raise NotFound(f"project '{project[:100]}' not found", {"project": project[:100]})
    return f"/explore/p/{project}/"


def authorize_page(request: Request, project: str) -> ProjectRef:
    """The project, readable by whoever asks (the API's rule), else 401/403/404."""
    project_path(project)
    return projects.authorize(request.app.state.store, page_principal(request), project, "viewer")


def check_same_origin(request: Request) -> None:
    """403 unless the browser says the form was posted from a page of this origin."""
    own = f"{request.url.scheme}://{request.url.netloc}"
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer")
        parts = urlsplit(referer) if referer else None
        origin = f"{parts.scheme}://{parts.netloc}" if parts and parts.scheme else None
    if origin != own:
        raise Forbidden("this form must be posted from this site's own pages")
    if request.headers.get("sec-fetch-site") not in (None, "same-origin"):
        raise Forbidden("this form must be posted from this site's own pages")


def verify_key(request: Request, project: str, client_id: str, client_secret: str) -> str:
    """The cookie value for a key that grants reading ``project``; 401/403 otherwise."""
    from annostream.errors import Unauthorized

    client_id, client_secret = client_id.strip(), client_secret.strip()
    if not _KEY_PART.match(client_id) or not _KEY_PART.match(client_secret):
        raise Unauthorized("invalid API key")
    who = projects.authenticate(request.app.state.store, client_id, client_secret)
    projects.authorize(request.app.state.store, who, project, "viewer")
    return f"{client_id}:{client_secret}"


def keep_key(response: Response, request: Request, project: str, value: str) -> None:
    response.set_cookie(KEY_COOKIE, value, max_age=COOKIE_MAX_AGE, path=project_path(project),
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")


def forget_key(response: Response, request: Request, project: str) -> None:
    response.delete_cookie(KEY_COOKIE, path=project_path(project), httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
