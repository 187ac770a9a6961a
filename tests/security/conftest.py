"""A store with a public and a private project, a key of every kind, and a server over it.

``world`` is built once per stack: projects ``pub`` (public) and ``priv`` (private), each
with admin, editor and viewer keys and a few real images; ``other`` (private) whose admin is
the foreign caller; a revoked key; a malformed credential. The server runs with small
long-poll caps (per caller, per process) and body caps, so each can be reached in a test.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from annostream.client.transports import EmbeddedTransport
from annostream.formats.coco import read_coco
from annostream.server.launch import running_server
from tests.conftest import make_coco

LONG_POLLS = 2  # per caller
LONG_POLLS_PER_PROCESS = 6
IMPORT_CAP = 32 << 20  # bytes; test_memory sends an editor's import over it
UPLOAD_CAP = 64 << 20  # and an editor's Diffgram upload over this one
JSON_CAP = 16 << 20  # and a JSON form field over this one


def basic(key: dict[str, str]) -> dict[str, str]:
    token = base64.b64encode(f"{key['client_id']}:{key['client_secret']}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@dataclass
class World:
    url: str
    store_dir: Path
    keys: dict[str, dict[str, str]]  # "pub:admin", "priv:viewer", "other:admin", ...
    shas: dict[str, str]  # project -> a blob sha256 it holds
    file_ids: dict[str, int]
    instance_ids: dict[str, int]
    callers: dict[str, dict[str, str]] = field(default_factory=dict)

    def headers(self, caller: str, project: str) -> dict[str, str]:
        """Headers of ``caller`` (anonymous, viewer, editor, admin, foreign, revoked,
        malformed) acting on ``project`` (pub or priv)."""
        if caller == "anonymous":
            return {}
        if caller == "malformed":
            return {"Authorization": "Bearer not-a-key"}
        if caller == "foreign":
            return basic(self.keys["other:admin"])
        if caller == "revoked":
            return basic(self.keys[f"{project}:revoked"])
        return basic(self.keys[f"{project}:{caller}"])

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)


def build_world(root: Path, store_dir: Path) -> tuple[dict[str, Any], ...]:
    local = EmbeddedTransport(store_dir)
    ann = make_coco(root / "coco", 3, seed=7)
    coco = json.loads(ann.read_text())
    keys: dict[str, dict[str, str]] = {}
    shas: dict[str, str] = {}
    file_ids: dict[str, int] = {}
    instance_ids: dict[str, int] = {}
    for project, public in (("pub", True), ("priv", False), ("other", False)):
        keys[f"{project}:admin"] = local.create_project(project, None, public)["admin_key"]
        for role in ("editor", "viewer"):
            keys[f"{project}:{role}"] = local.create_key(project, role)
        revoked = local.create_key(project, "viewer")
        local.revoke_key(project, revoked["client_id"])
        keys[f"{project}:revoked"] = revoked
        local.import_source(project, "Default", read_coco(coco, root / "coco" / "images"), "coco")
        ids, rev = local.ids(project, "Default", None, None)
        items = local.items(project, ids.tolist(), rev, False)
        shas[project] = items[0][0]["file"]["sha256"]
        file_ids[project] = int(ids[0])
        instance_ids[project] = next(i["id"] for item, _ in items for i in item["instances"])
        local.create_tag(project, "v1", None)
    return keys, shas, file_ids, instance_ids


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, new_store_dir: Callable[[Path], Path]) -> Iterator[World]:
    root = tmp_path_factory.mktemp("security")
    store_dir = new_store_dir(root / "store")
    keys, shas, file_ids, instance_ids = build_world(root, store_dir)
    env = {
        "ANNOSTREAM_LONG_POLLS_PER_CALLER": str(LONG_POLLS),
        "ANNOSTREAM_MAX_LONG_POLLS": str(LONG_POLLS_PER_PROCESS),
        "ANNOSTREAM_MAX_IMPORT_BYTES": str(IMPORT_CAP),
        "ANNOSTREAM_MAX_UPLOAD_BYTES": str(UPLOAD_CAP),
        "ANNOSTREAM_MAX_JSON_BYTES": str(JSON_CAP),
    }
    with running_server(store_dir, env=env) as url:
        yield World(url, store_dir, keys, shas, file_ids, instance_ids)
