"""Saved copies: a pinned view saved to a folder streams the same samples, no server."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import annostream
from annostream import Conflict, Project
from annostream.client.transports import EmbeddedTransport
from annostream.formats.coco import read_coco
from annostream.server.launch import running_server
from tests.conftest import Source, make_coco
from tests.revhelpers import box, png, view_bytes


def test_saved_copy_streams_with_the_server_stopped(tmp_path: Path) -> None:
    store_dir = tmp_path / "server-store"
    ann = make_coco(tmp_path / "coco", 12, seed=11)
    local = EmbeddedTransport(store_dir)
    key = local.create_project("offline-src", "Offline source", False)["admin_key"]
    local.import_source("offline-src", "Default", read_coco(ann, tmp_path / "coco" / "images"), "coco")
    local.create_attribute_group("offline-src", "weather", "select", ["rain", "sun"])
    with running_server(store_dir) as url:
        remote = Project("offline-src", key["client_id"], key["client_secret"], host=url)
        made = remote.upload(
            "Default",
            data=png(),
            filename="extra.png",
            instances=[
                box(1, 1, 9, 9, "dog", attributes={"weather": "rain"}),
                {"type": "global", "attributes": {"weather": "sun"}},
            ],
        )
        pinned = remote.dataset("Default").snapshot()
        expected = view_bytes(pinned)
        labels = dict(pinned.labels)
        cats = len(pinned.slice("labels.cat > 0"))
        copy = pinned.save(tmp_path / "offline")
        remote.write_instances(made["id"], [], replace=True)  # later writes do not reach the copy
        assert view_bytes(copy) == expected
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/healthz", timeout=1.0)

    offline = annostream.open(tmp_path / "offline")
    ds = offline.dataset("Default")
    assert view_bytes(ds) == expected, "same ids, names, boxes, labels, label ids, bytes"
    assert ds.revision == pinned.revision and list(ds.ids) == list(pinned.ids)
    assert dict(ds.labels) == labels
    assert len(ds.slice("labels.cat > 0")) == cats, "queries work offline too"
    assert offline.transport.attribute_groups("offline-src", None)[0]["options"] == ["rain", "sun"]
    assert ds[len(ds) - 1]["attributes"] == {"weather": "sun"}


def test_save_a_slice_by_its_first_name_cache_to(project: Project, source: Source, tmp_path: Path) -> None:
    view = project.dataset("Default").slice("labels.person >= 1")
    target = tmp_path / f"copy-{type(project.transport).__name__}"
    copy = view.cache_to(target)
    assert 0 < len(copy) < len(source.coco["images"])
    assert view_bytes(copy) == view_bytes(view)
    blobs = {p.name for p in (target / "blobs").rglob("*") if p.is_file()}
    assert blobs == {s["file"]["sha256"] for s in copy}, "exactly the view's blobs"
    with pytest.raises(Conflict):
        view.cache_to(target)
