"""Who may see an explorer page, and the one write a browser makes: handing over a key.

Invariants: a page authorises as the API operation it shows (``dispatch.authorize`` on that
operation's declaration, so the policy is the one stated there) with the principal that
``auth.page_principal`` makes; the key a person types is checked the same way (as
``get_project``) before it is kept, and kept only in an HttpOnly,
SameSite=Strict cookie scoped to that project's pages; the form that sets or clears it is
refused unless the request comes from this very origin (Origin, else Referer), so another
site can neither log a browser in with its own key nor log it out.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import Response

from annostream.errors import Forbidden, InvalidInput, NotFound
from annostream.operations import OPERATIONS
from annostream.schema import INT32_MAX, INT64_MAX, ProjectCreate
from annostream.server.auth import KEY_COOKIE, page_principal
from annostream.service import dispatch, projects
from annostream.service.projects import Principal, ProjectRef

_KEY_PART = re.compile(r"^[A-Za-z0-9_\-]{1,200}$")
_PROJECT = re.compile(ProjectCreate.model_fields["string_id"].metadata[0].pattern)
COOKIE_MAX_AGE = 30 * 86400


def project_path(project: str) -> str:
    """The URL path under which a project's pages (and its key cookie) live; only a name a
    project can have (so nothing else can reach a Set-Cookie attribute)."""
    if not _PROJECT.match(project):
        raise NotFound(f"project '{project[:100]}' not found", {"project": project[:100]})
    return f"/explore/p/{project}/"


def _as_operation(request: Request, who: Principal, project: str, operation: str) -> ProjectRef:
    granted = dispatch.authorize(request.app.state.store, who, OPERATIONS[operation], {"project": project})
    if not isinstance(granted, ProjectRef):  # every page shows a project-scoped read
        raise Forbidden(f"'{operation}' is not a project operation")
    return granted


# Page arguments that are ids (int64) or revisions (int32) when they are numbers.
_NUMBERS = {"after": INT64_MAX, "file_id": INT64_MAX, "as_of": INT32_MAX, "since": INT32_MAX}


def check_arguments(request: Request) -> None:
    """422 naming the argument for what no page can take: NUL anywhere (PostgreSQL cannot
    compare it), a number past its column's range (as the API's declarations refuse them)."""
    for name, value in (*request.path_params.items(), *request.query_params.items()):
        text = str(value)
        if "\x00" in text:
            raise InvalidInput(f"{name}: must not contain NUL", {"field": name})
        bound = _NUMBERS.get(name)
        if bound is not None and text.strip().lstrip("-").isdigit() and not 0 <= int(text) <= bound:
            raise InvalidInput(f"{name}: must be a number in [0, {bound}]", {"field": name})


def authorize_page(request: Request, project: str, operation: str) -> ProjectRef:
    """The project, if whoever asks may run the API ``operation`` the page shows; else
    401/403/404, exactly as the API would answer; 422 for arguments no page takes."""
    project_path(project)
    check_arguments(request)
    return _as_operation(request, page_principal(request), project, operation)


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
    _as_operation(request, who, project, "get_project")
    return f"{client_id}:{client_secret}"


def keep_key(response: Response, request: Request, project: str, value: str) -> None:
    response.set_cookie(
        KEY_COOKIE,
        value,
        max_age=COOKIE_MAX_AGE,
        path=project_path(project),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def forget_key(response: Response, request: Request, project: str) -> None:
    response.delete_cookie(
        KEY_COOKIE,
        path=project_path(project),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
