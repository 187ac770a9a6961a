"""The authorization matrix: every route of the app x {anonymous, viewer, editor, admin, another
project's admin, revoked key, malformed key} x {public, private project}, each cell asserted.

The routes come from the app's own OpenAPI document, and ``POLICY`` must name each of them:
the native API's policy is generated from its operation table (annostream/operations.py),
the Diffgram routes' from theirs (server/diffgram_compat.py), the meta routes are listed
here, and a route without a policy fails ``test_every_route_has_a_policy``, so none can
escape the matrix. A cell is *allowed* when the answer is neither 401 nor 403 (nor a 5xx); a
refused cell must be exactly 401 (who are you?) or 403 (you may not).
"""

from __future__ import annotations

import io
import tempfile
from typing import Any

import orjson
import pytest
from PIL import Image

from annostream.operations import API_PREFIX, OPERATIONS
from annostream.server.app import create_app
from annostream.server.diffgram_compat import DIFFGRAM_OPERATIONS
from annostream.service.projects import ROLE_RANK
from annostream.store import Store
from tests.security.conftest import World

CALLERS = ("anonymous", "viewer", "editor", "admin", "foreign", "revoked", "malformed")
VISIBILITY = ("pub", "priv")
NOWHERE = 2**62  # an id no store holds: an allowed caller gets 404, not a side effect

# Who may call what. The native API's policy is its operation table's (``Op.role``, or
# ``Op.superuser``: only server admin keys create projects; listing projects is server-level
# and shows each caller what it may read).
# Kinds: "open" (anyone, no credentials read), "any" (any valid or no credentials),
# "superuser" (server admin keys), "signature" (a valid signature, nothing else), or the
# least project role: "viewer" (anonymous too on public projects), "editor", "admin".
SERVER_LEVEL = {"list_projects": "any"}
# The Diffgram routes' policy is their own table's (server/diffgram_compat.py); the one
# without a role is granted by its signature alone.
UNROLED_LEGACY = {"signed_blob": "signature"}
POLICY: dict[tuple[str, str], str] = {
    **{
        (op.method, API_PREFIX + op.path): op.role or ("superuser" if op.superuser else SERVER_LEVEL[op.name])
        for op in OPERATIONS.values()
    },
    **{(op.method, op.path): op.role or UNROLED_LEGACY[op.name] for op in DIFFGRAM_OPERATIONS.values()},
    ("GET", "/healthz"): "open",
    ("GET", "/"): "open",
    ("GET", "/readyz"): "open",
}


def app_operations() -> set[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(tmp)
        try:
            spec = create_app(store).openapi()
        finally:
            store.close()
    return {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}


def test_every_route_has_a_policy() -> None:
    assert app_operations() == set(POLICY)


def expected(need: str, caller: str, project: str) -> int | None:
    """None when the cell is allowed, else the status it must be refused with."""
    if need == "open":
        return None
    if need == "signature":
        return 403
    if caller in ("revoked", "malformed"):
        return 401
    if need == "any":
        return None
    if need == "superuser":
        return 401 if caller == "anonymous" else 403
    public_read = project == "pub" and need == "viewer"
    if caller == "anonymous":
        return None if public_read else 401
    if caller == "foreign":
        return None if public_read else 403
    return None if ROLE_RANK[caller] >= ROLE_RANK[need] else 403


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (5, 4), (1, 2, 3)).save(buf, "PNG")
    return buf.getvalue()


def request_for(world: World, method: str, path: str, project: str, n: int) -> dict[str, Any]:
    """A well-formed request for the route, aimed where an allowed caller does no harm."""
    url = path.format(
        project=project,
        dataset="Default",
        file_id=NOWHERE,
        instance_id=NOWHERE,
        sha256=world.shas[project],
        name="no-such-tag",
        client_id="as_nosuchkey",
        username="u",
    )
    req: dict[str, Any] = {"method": method, "url": url}
    if path.endswith("/files"):
        req["files"] = {"file": (f"m{n}.txt", b"hello", "text/plain")}
    elif path.endswith("/from_local"):
        req["files"] = {"file": ("m.png", _png(), "image/png")}
        req["data"] = {"json": orjson.dumps({"instance_list": []}).decode()}
    elif path.endswith("/blobs") and method == "PUT":
        req["content"] = _png()
    elif path.endswith("/import:records"):
        req["content"] = b'{"labels": [], "attribute_groups": [], "total": 0}\n'
    elif path.endswith("/signed"):
        req["params"] = {"expires": 2**40, "sig": "0" * 64}
    elif path.endswith("/export"):
        req["params"] = {"format": "json", "images": "false"}
    elif path.endswith("/changes"):
        req["params"] = {"since": 0}
    elif method in ("POST", "PUT"):
        req["json"] = {
            "/api/v2/projects": {"string_id": f"matrix{n}"},
            "/api/v2/projects/{project}/keys": {"role": "viewer"},
            "/api/v2/projects/{project}/labels": {"name": f"matrix{n}"},
            "/api/v2/projects/{project}/attribute_groups": {"name": f"matrix{n}", "kind": "text"},
            "/api/v2/projects/{project}/datasets": {"name": f"matrix{n}"},
            "/api/v2/projects/{project}/items:batch": {"ids": [NOWHERE]},
            "/api/v2/projects/{project}/files/{file_id}/instances": {"instances": []},
            "/api/v2/projects/{project}/datasets/{dataset}/import": {
                "images": [],
                "annotations": [],
                "categories": [],
            },
            "/api/v2/projects/{project}/tags": {"name": f"matrix{n}"},
            "/api/project/{project}/user/{username}/file/list": {"metadata": {}},
            "/api/v1/project/{project}/file/exists": {"file_id_list": [NOWHERE]},
            "/api/v1/file/view": {"file_id": NOWHERE, "project_string_id": project},
        }.get(path, {})
    return req


@pytest.mark.parametrize("method, path", sorted(POLICY))
def test_authorization_matrix(world: World, method: str, path: str) -> None:
    need = POLICY[(method, path)]
    wrong: list[str] = []
    with world.client() as http:
        for project in VISIBILITY:
            for n, caller in enumerate(CALLERS):
                r = http.request(
                    **request_for(world, method, path, project, n), headers=world.headers(caller, project)
                )
                want = expected(need, caller, project)
                ok = (
                    (r.status_code not in (401, 403) and r.status_code < 500)
                    if want is None
                    else r.status_code == want
                )
                if not ok:
                    wrong.append(
                        f"{caller}@{project}: {r.status_code} (want {want or 'allowed'}) {r.text[:120]}"
                    )
    assert not wrong, "\n".join(wrong)
