"""Nobody reads or writes a project without the right key (over real HTTP)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from annostream import Forbidden, Project, Unauthorized
from annostream.client.transports import EmbeddedTransport


@pytest.fixture(scope="module")
def keys(server_store: tuple[str, Path]) -> dict[str, dict[str, str]]:
    _, store_dir = server_store
    local = EmbeddedTransport(store_dir)
    alpha = local.create_project("alpha", None, False)["admin_key"]
    beta = local.create_project("beta", None, False)["admin_key"]
    local.create_project("open-data", None, True)
    local.create_dataset("alpha", "Default")
    local.create_dataset("open-data", "Default")
    return {
        "alpha_admin": alpha,
        "beta_admin": beta,
        "alpha_viewer": local.create_key("alpha", "viewer"),
        "alpha_editor": local.create_key("alpha", "editor"),
    }


def test_private_project_needs_a_key(server_store: tuple[str, Path], keys: dict) -> None:
    url, _ = server_store
    r = httpx.get(f"{url}/api/v2/projects/alpha/datasets")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    with pytest.raises(Unauthorized):
        Project("alpha", host=url)


def test_key_of_another_project_is_forbidden(server_store: tuple[str, Path], keys: dict) -> None:
    url, _ = server_store
    beta = keys["beta_admin"]
    r = httpx.get(f"{url}/api/v2/projects/alpha/datasets", auth=(beta["client_id"], beta["client_secret"]))
    assert r.status_code == 403
    with pytest.raises(Forbidden):
        Project("alpha", beta["client_id"], beta["client_secret"], host=url)


def test_wrong_secret_is_unauthorized(server_store: tuple[str, Path], keys: dict) -> None:
    url, _ = server_store
    r = httpx.get(f"{url}/api/v2/projects/alpha", auth=(keys["alpha_viewer"]["client_id"], "guess"))
    assert r.status_code == 401


def test_bearer_and_basic_are_the_same_key(server_store: tuple[str, Path], keys: dict) -> None:
    url, _ = server_store
    v = keys["alpha_viewer"]
    bearer = httpx.get(
        f"{url}/api/v2/projects/alpha",
        headers={"Authorization": f"Bearer {v['client_id']}:{v['client_secret']}"},
    )
    basic = httpx.get(f"{url}/api/v2/projects/alpha", auth=(v["client_id"], v["client_secret"]))
    assert bearer.status_code == basic.status_code == 200
    assert bearer.json()["role"] == "viewer"


def test_viewer_cannot_write_editor_can(server_store: tuple[str, Path], keys: dict, tmp_path: Path) -> None:
    url, _ = server_store
    v, e = keys["alpha_viewer"], keys["alpha_editor"]
    viewer = Project("alpha", v["client_id"], v["client_secret"], host=url)
    with pytest.raises(Forbidden):
        viewer.create_label("cat")
    r = httpx.post(
        f"{url}/api/v2/projects/alpha/keys", json={"role": "admin"}, auth=(v["client_id"], v["client_secret"])
    )
    assert r.status_code == 403
    editor = Project("alpha", e["client_id"], e["client_secret"], host=url)
    assert editor.create_label("cat")["id"] == 1
    r = httpx.post(
        f"{url}/api/v2/projects/alpha/keys",
        json={"role": "viewer"},
        auth=(e["client_id"], e["client_secret"]),
    )
    assert r.status_code == 403, "only project admins mint keys"


def test_anonymous_reads_only_public_projects(server_store: tuple[str, Path], keys: dict) -> None:
    url, _ = server_store
    public = Project("open-data", host=url)
    assert len(public.dataset("Default")) == 0
    r = httpx.post(f"{url}/api/v2/projects/open-data/labels", json={"name": "x"})
    assert r.status_code == 401
    listed = httpx.get(f"{url}/api/v2/projects").json()
    assert [p["string_id"] for p in listed] == ["open-data"]


def test_only_server_admins_create_projects(server_store: tuple[str, Path], keys: dict) -> None:
    url, _ = server_store
    a = keys["alpha_admin"]
    r = httpx.post(
        f"{url}/api/v2/projects", json={"string_id": "gamma"}, auth=(a["client_id"], a["client_secret"])
    )
    assert r.status_code == 403
    r = httpx.post(f"{url}/api/v2/projects", json={"string_id": "gamma"})
    assert r.status_code == 401  # no credentials at all: who are you, not "you may not"
