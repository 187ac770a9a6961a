"""Writes: uploads with instances, edits, validation, and imports that write all or nothing."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from annostream import InvalidInput, NotFound, Project
from annostream.client.transports import EmbeddedTransport
from annostream.formats.coco import read_coco
from tests.conftest import blob_names, make_coco
from tests.revhelpers import new_project

TRANSPORTS = ["http", "embedded"]


def _png(w: int = 64, h: int = 48, color: tuple[int, int, int] = (10, 20, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(params=TRANSPORTS)
def editor(request: pytest.FixtureRequest, server_store: tuple[str, Path], server_client: Any) -> Project:
    """A fresh project as its admin: over HTTP to the app in this process, or embedded."""
    return new_project(request.param, server_client, server_store[1], prefix="w")


def _box(x0: float, y0: float, x1: float, y1: float, label: str = "cat", **kw: object) -> dict:
    return {
        "type": "box",
        "label": label,
        "geometry": {"x_min": x0, "y_min": y0, "x_max": x1, "y_max": y1},
        **kw,
    }


def test_upload_with_instances_then_edit(editor: Project) -> None:
    made = editor.upload(
        "Default",
        data=_png(),
        filename="a.png",
        metadata={"split": "train"},
        instances=[
            _box(1, 2, 30, 40),
            _box(5, 5, 10, 10, "dog", attributes={"weather": "rain"}),
            {"type": "tag", "label": "cat"},
            {"type": "global", "attributes": {"weather": "sun"}},
        ],
    )
    assert made["instances"] == 4 and made["width"] == 64
    ds = editor.dataset("Default")
    sample = ds[0]
    assert sample["file"]["metadata"] == {"split": "train"}
    assert sample["labels"] == ["cat", "dog"]
    assert sample["tags"] == ["cat"]
    assert sample["attributes"] == {"weather": "sun"}
    before = ds.revision

    replaced = editor.write_instances(made["id"], [_box(0, 0, 64, 48, "dog")], replace=True)
    assert replaced["removed"] == 4 and replaced["revision"] == before + 1
    fresh = editor.dataset("Default")[0]
    assert fresh["labels"] == ["dog"]
    assert ds[0]["labels"] == ["cat", "dog"], "a pinned view keeps reading its revision"

    added = editor.write_instances(made["id"], [_box(1, 1, 2, 2)])
    inst_id = editor.dataset("Default")[0]["instances"][-1]["id"]
    editor.delete_instance(inst_id)
    assert editor.dataset("Default")[0]["labels"] == ["dog"]
    assert editor.dataset("Default").as_of(added["revision"])[0]["labels"] == ["dog", "cat"]


@pytest.mark.parametrize(
    "instance, field",
    [
        (_box(10, 10, 100, 20), "instances[0].geometry"),
        (
            {"type": "polygon", "label": "cat", "geometry": {"points": [[1, 1], [2, 2]]}},
            "instances[0].geometry.points",
        ),
        (_box(1, 1, 2, 2, "unicorn"), "instances[0].label"),
        (_box(1, 1, 2, 2, attributes={"weather": "snow"}), "instances[0].attributes.weather"),
        (_box(1, 1, 2, 2, attributes={"mood": "x"}), "instances[0].attributes.mood"),
        ({"type": "hexagon", "label": "cat"}, "instances[0].type"),
        ({"type": "box", "label": "cat", "geometry": {"x_min": 1}}, "instances[0].geometry.y_min"),
    ],
)
def test_invalid_instance_is_422_naming_the_field(editor: Project, instance: dict, field: str) -> None:
    rev = editor.revision
    with pytest.raises(InvalidInput) as info:
        editor.upload("Default", data=_png(), filename="bad.png", instances=[instance])
    assert info.value.detail["field"] == field
    assert info.value.status == 422
    assert editor.revision == rev, "nothing was written"


def test_upload_that_is_not_an_image_is_422(editor: Project) -> None:
    with pytest.raises(InvalidInput, match="not a readable image"):
        editor.upload("Default", data=b"%PDF-1.4 not an image", filename="doc.pdf")


def test_blobs_are_deduplicated(editor: Project, server_store: tuple[str, Path]) -> None:
    a = editor.upload("Default", data=_png(color=(1, 2, 3)), filename="one.png")
    b = editor.upload("Default", data=_png(color=(1, 2, 3)), filename="two.png")
    assert a["sha256"] == b["sha256"] and a["id"] != b["id"]
    _, store_dir = server_store
    assert blob_names(store_dir).count(a["sha256"]) == 1


def _bad_coco(tmp_path: Path, breakage: str) -> tuple[dict, Path]:
    ann = make_coco(tmp_path, 6, seed=3)
    coco = json.loads(ann.read_text())
    if breakage == "missing image":
        (tmp_path / "images" / coco["images"][2]["file_name"]).unlink()
    elif breakage == "unknown category":
        coco["annotations"][-1]["category_id"] = 99
    elif breakage == "box outside":
        coco["annotations"][1]["bbox"] = [10, 10, 5000, 5]
    return coco, tmp_path / "images"


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("missing image", "image file cannot be read"),
        ("unknown category", "category_id 99"),
        ("box outside", "outside the image"),
    ],
)
def test_malformed_coco_names_the_item_and_writes_nothing(
    editor: Project, tmp_path: Path, breakage: str, message: str
) -> None:
    coco, images = _bad_coco(tmp_path, breakage)
    rev = editor.revision
    labels = dict(editor.labels)
    with pytest.raises(InvalidInput, match=message) as info:
        editor.import_coco(copy.deepcopy(coco), images, dataset="Imported")
    assert "record" in info.value.detail or "field" in info.value.detail
    assert editor.revision == rev
    assert dict(editor.labels) == labels
    with pytest.raises(NotFound, match="'Imported'"):
        editor.dataset("Imported")


def test_failed_import_leaves_no_new_blobs(server_store: tuple[str, Path], tmp_path: Path) -> None:
    _, store_dir = server_store
    local = EmbeddedTransport(store_dir)
    local.create_project("all-or-nothing", None, False)
    coco, images = _bad_coco(tmp_path, "missing image")
    before = set(blob_names(store_dir))
    coco["images"].append(coco["images"].pop(2))  # fail on the last image, after blobs were written
    with pytest.raises(InvalidInput):
        local.import_source("all-or-nothing", "Default", read_coco(coco, images), "coco")
    after = set(blob_names(store_dir))
    assert after == before


def test_blob_route_has_etag_range_and_304(server_store: tuple[str, Path]) -> None:
    url, store_dir = server_store
    local = EmbeddedTransport(store_dir)
    key = local.create_project("blobby", None, False)["admin_key"]
    made = local.upload_file("blobby", "Default", "x.png", _png(), [], {})
    auth = (key["client_id"], key["client_secret"])
    blob_url = f"{url}/api/v2/projects/blobby/blobs/{made['sha256']}"
    full = httpx.get(blob_url, auth=auth, follow_redirects=True)  # S3: 307 to a presigned URL
    assert full.status_code == 200 and full.content == _png()
    assert (full.history or [full])[0].headers["etag"] == f'"{made["sha256"]}"'
    assert "immutable" in full.headers["cache-control"]
    part = httpx.get(blob_url, auth=auth, headers={"Range": "bytes=0-7"}, follow_redirects=True)
    assert part.status_code == 206 and part.content == _png()[:8]
    again = httpx.get(blob_url, auth=auth, headers={"If-None-Match": f'"{made["sha256"]}"'})
    assert again.status_code == 304
    other = httpx.get(f"{url}/api/v2/projects/blobby/blobs/{'0' * 64}", auth=auth)
    assert other.status_code == 404
