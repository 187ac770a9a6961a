"""Saved copies: a pinned view saved to a folder streams the same samples, no server."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import annostream
from annostream import Conflict, InvalidInput, Project
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


# --- a hostile source: the copy checks what it is sent as an upload would ---------------------


def _source_items(tmp_path: Path) -> tuple[list[Any], list[tuple[dict[str, Any], bytes | None]]]:
    """The labels and (item, bytes) pairs of a small real store: a PNG, a video, a text file."""
    from tests.videos import make_video

    local = EmbeddedTransport(tmp_path / "src", create=True)
    local.create_project("src", None, False)
    local.create_label("src", "cat", "#ff0000")
    local.upload_file("src", "Default", "a.png", png(), [box(1, 1, 9, 9, "cat")], {})
    local.upload_file("src", "Default", "clip.mp4", make_video(6), [], {})
    local.upload_file("src", "Default", "note.txt", b"a short note", [], {})
    ds = annostream.open(tmp_path / "src").dataset("Default")
    return local.labels("src", None), [(copy.deepcopy(i), b) for i, b in ds.snapshot().iter_raw()]


def _save(target: Path, label_list: list[Any], items: list[Any]) -> dict[str, Any]:
    from annostream.service.save import save_snapshot
    from annostream.store import Store

    store = Store.open(target)
    try:
        return save_snapshot(
            store,
            string_id="copy",
            name="copy",
            revision=99,
            label_list=label_list,
            groups=[],
            dataset="Default",
            items=iter(items),
        )
    finally:
        store.close()


def test_a_saved_copy_probes_its_files_and_keeps_the_video_facts(tmp_path: Path) -> None:
    label_list, items = _source_items(tmp_path)
    assert _save(tmp_path / "copy", label_list, items)["files"] == 3
    src = {i["file"]["name"]: i["file"] for i, _ in items}
    copied = {s["file"]["name"]: s["file"] for s in annostream.open(tmp_path / "copy").dataset("Default")}
    for name, f in src.items():
        for field in ("type", "width", "height", "content_type", "frame_count", "fps", "duration", "codec"):
            assert copied[name][field] == f[field], (name, field)
    assert copied["clip.mp4"]["keyframes"] == src["clip.mp4"]["keyframes"] is not None
    assert copied["note.txt"]["text"] == "a short note"


def _tamper_label(labels: list[Any], _items: list[Any]) -> str:
    labels[0]["color"] = "red;}</style><script>alert(1)</script>"
    return "labels[0].color"


def _tamper_type(_labels: list[Any], items: list[Any]) -> str:
    item, _ = next(p for p in items if p[0]["file"]["name"] == "a.png")
    item["file"]["content_type"] = "text/html"
    item["file"]["type"] = "video"
    return ".type"


def _tamper_size(_labels: list[Any], items: list[Any]) -> str:
    next(p for p in items if p[0]["file"]["name"] == "a.png")[0]["file"]["width"] = 4096
    return ".width"


def _tamper_bytes(_labels: list[Any], items: list[Any]) -> str:
    n = next(n for n, p in enumerate(items) if p[0]["file"]["name"] == "a.png")
    items[n] = (items[n][0], b"<html><script>alert(1)</script></html>")
    return "file "


def _tamper_name(_labels: list[Any], items: list[Any]) -> str:
    items[0][0]["file"]["name"] = "../../outside.png"
    return ".name"


def _tamper_metadata(_labels: list[Any], items: list[Any]) -> str:
    items[0][0]["file"]["metadata"] = {"k\x00": 1}
    return "file "


@pytest.mark.parametrize(
    "tamper", [_tamper_label, _tamper_type, _tamper_size, _tamper_bytes, _tamper_name, _tamper_metadata]
)
def test_a_hostile_source_is_refused_naming_the_field_and_writes_nothing(
    tmp_path: Path, tamper: Callable[[list[Any], list[Any]], str]
) -> None:
    label_list, items = _source_items(tmp_path)
    field = tamper(label_list, items)
    with pytest.raises(InvalidInput) as refused:
        _save(tmp_path / "copy", label_list, items)
    assert field in refused.value.message
    store = EmbeddedTransport(tmp_path / "copy")
    assert [p["string_id"] for p in store.list_projects()] == [], "one transaction: nothing written"
    assert not [p for p in (tmp_path / "copy" / "blobs").rglob("*") if p.is_file()], "no blob left behind"
