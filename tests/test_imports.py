"""Imports: one pipeline for every format, on both transports and both stacks.

COCO shapes, re-imports that skip what the dataset holds, folders of images, many files in
one commit, Diffgram-style instances, names confined to their folder, blobs scoped by
project, malformed records refused with a 422 that names them, and idempotency keys.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from PIL import Image

from annostream import InvalidInput, NotFound, Project
from annostream.formats import ImportSource
from annostream.service import imports
from annostream.service.projects import LOCAL, authorize
from annostream.service.staging import stage_blobs
from annostream.store import Store
from tests.conftest import make_coco
from tests.revhelpers import new_project, png

TRANSPORTS = ["http", "embedded"]


@pytest.fixture(params=TRANSPORTS)
def editor(request: pytest.FixtureRequest, server_store: tuple[str, Path]) -> Project:
    url, store_dir = server_store
    return new_project(request.param, url, store_dir, prefix="imp", vocabulary=False)


def make_instances_coco(out: Path, n_images: int, seed: int = 0) -> Path:
    """A COCO instances file shaped as COCO ships it: every annotation has a ``bbox`` and a
    polygon ``segmentation`` (crowds an RLE one), images carry license and URLs."""
    rng = random.Random(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    cats = [
        {"supercategory": "animal", "id": 17, "name": "cat"},
        {"supercategory": "animal", "id": 18, "name": "dog"},
        {"supercategory": "person", "id": 1, "name": "person"},
    ]
    images, anns = [], []
    for i in range(1, n_images + 1):
        w, h = rng.randint(60, 90), rng.randint(50, 70)
        name = f"{i:012d}.jpg"
        Image.new("RGB", (w, h), (rng.randrange(256), 80, 160)).save(out / "images" / name, format="JPEG")
        images.append(
            {
                "license": 3,
                "file_name": name,
                "coco_url": f"http://images.cocodataset.org/val2017/{name}",
                "height": h,
                "width": w,
                "date_captured": "2013-11-14 17:02:52",
                "flickr_url": "http://farm7.staticflickr.com/x.jpg",
                "id": i,
            }
        )
        for _ in range(rng.randint(1, 3)):
            x0, y0 = rng.uniform(0, w / 2), rng.uniform(0, h / 2)
            x1, y1 = rng.uniform(x0 + 5, w), rng.uniform(y0 + 5, h)
            seg = [[x0, y0, x1, y0, x1, y1, (x0 + x1) / 2, (y0 + y1) / 2, x0, y1]]
            anns.append(
                {
                    "segmentation": seg,
                    "area": (x1 - x0) * (y1 - y0) * 0.8,
                    "iscrowd": 0,
                    "image_id": i,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "category_id": rng.choice(cats)["id"],
                    "id": 900000 + len(anns),
                }
            )
    anns.append(
        {
            "segmentation": {"counts": [5, 10, 30], "size": [images[0]["height"], images[0]["width"]]},
            "area": 40.0,
            "iscrowd": 1,
            "image_id": 1,
            "bbox": [2.0, 3.0, 10.0, 12.0],
            "category_id": 1,
            "id": 999999,
        }
    )
    path = out / "instances_val2017.json"
    path.write_text(
        json.dumps(
            {
                "info": {"description": "COCO-shaped"},
                "licenses": [],
                "images": images,
                "annotations": anns,
                "categories": cats,
            }
        )
    )
    return path


def _boxes_by_name(
    project: Project, dataset: str = "Default"
) -> dict[str, list[tuple[str, str, list[float]]]]:
    got: dict[str, list[tuple[str, str, list[float]]]] = {}
    for s in project.dataset(dataset).with_options(decode=None):
        got[s["file"]["name"]] = [(i["type"], i["label"], i["bbox"]) for i in s["instances"]]
    return got


# --- COCO shapes ---------------------------------------------------------------------------


def test_coco_shapes_box_gives_one_box_per_bbox(editor: Project, tmp_path: Path) -> None:
    ann = make_instances_coco(tmp_path, 5)
    coco = json.loads(ann.read_text())
    result = editor.import_coco(ann, tmp_path / "images", shapes="box")
    assert result["files"] == 5 and result["instances"] == len(coco["annotations"])
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {img["id"]: img["file_name"] for img in coco["images"]}
    want: dict[str, list[tuple[str, str, list[float]]]] = {}
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        want.setdefault(files[a["image_id"]], []).append(
            ("box", names[a["category_id"]], [x, y, x + w, y + h])
        )
    got = _boxes_by_name(editor)
    assert got.keys() == want.keys()
    for name, insts in want.items():
        assert [(t, lab) for t, lab, _ in got[name]] == [(t, lab) for t, lab, _ in insts]
        for (_, _, a), (_, _, b) in zip(got[name], insts, strict=True):
            assert a == pytest.approx(b)


def test_coco_shapes_auto_and_polygon(editor: Project, tmp_path: Path) -> None:
    ann = make_instances_coco(tmp_path, 3, seed=4)
    editor.import_coco(ann, tmp_path / "images", dataset="Auto")
    types = {t for insts in _boxes_by_name(editor, "Auto").values() for t, _, _ in insts}
    assert types == {"polygon", "box"}, "polygons where the segmentation has them, the crowd RLE a box"
    rev = editor.revision
    with pytest.raises(InvalidInput, match=r"annotations\[\d+\] \(id 999999\).*no polygon segmentation"):
        editor.import_coco(ann, tmp_path / "images", dataset="Poly", shapes="polygon")
    assert editor.revision == rev
    coco = json.loads(ann.read_text())
    coco["annotations"] = [a for a in coco["annotations"] if not a["iscrowd"]]
    editor.import_coco(coco, tmp_path / "images", dataset="Poly", shapes="polygon")
    assert {t for insts in _boxes_by_name(editor, "Poly").values() for t, _, _ in insts} == {"polygon"}
    with pytest.raises(InvalidInput, match="shapes"):
        editor.import_coco(coco, tmp_path / "images", dataset="X", shapes="mask")


# --- re-imports, metadata ------------------------------------------------------------------


def test_reimport_skips_what_the_dataset_holds(editor: Project, tmp_path: Path) -> None:
    ann = make_coco(tmp_path, 6, seed=2)
    first = editor.import_coco(ann, tmp_path / "images")
    assert first["files"] == 6 and first["skipped"] == 0
    again = editor.import_coco(ann, tmp_path / "images")
    assert again == {**again, "files": 0, "instances": 0, "skipped": 6, "revision": first["revision"]}
    assert editor.revision == first["revision"], "an import that changes nothing commits nothing"
    assert len(editor.dataset("Default")) == 6
    other = editor.import_coco(ann, tmp_path / "images", dataset="Other")
    assert other["files"] == 6, "duplicates are per dataset"
    kept = editor.import_coco(ann, tmp_path / "images", duplicates="keep")
    assert kept["files"] == 6 and kept["skipped"] == 0
    assert len(editor.dataset("Default")) == 12
    # same name, other bytes: not a duplicate
    first_image = tmp_path / "images" / "img_00001.jpg"
    Image.new("RGB", Image.open(first_image).size, (1, 2, 3)).save(first_image, format="JPEG")
    changed = editor.import_coco(json.loads(ann.read_text()) | {"annotations": []}, tmp_path / "images")
    assert changed["files"] == 1 and changed["skipped"] == 5


def test_imports_record_the_same_metadata_on_both_transports(
    server_store: tuple[str, Path], tmp_path: Path
) -> None:
    url, store_dir = server_store
    ann = make_instances_coco(tmp_path, 3, seed=8)
    metas = []
    for kind in TRANSPORTS:
        p = new_project(kind, url, store_dir, prefix="meta", vocabulary=False)
        p.import_coco(ann, tmp_path / "images")
        metas.append(
            {s["file"]["name"]: s["file"]["metadata"] for s in p.dataset("Default").with_options(decode=None)}
        )
    assert metas[0] == metas[1]
    first = metas[0]["000000000001.jpg"]
    assert first["coco_id"] == 1 and first["license"] == 3 and "sha256" not in first


# --- folders of images, many files in one commit ------------------------------------------


def _image_folder(root: Path) -> dict[str, str]:
    classes = {}
    for cls, n in (("cat", 3), ("dog", 2), ("traffic light", 1)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            path = root / cls / f"{i}.png"
            Image.new("RGB", (16 + i, 12), (len(cls) * 20, i * 30, 5)).save(path)
            classes[f"{cls}/{i}.png"] = cls
    (root / "README.txt").write_text("not an image")
    return classes


def test_import_images_with_labels_from_folders(editor: Project, tmp_path: Path) -> None:
    classes = _image_folder(tmp_path / "tree")
    (tmp_path / "tree" / "README.txt").unlink()
    result = editor.import_images(tmp_path / "tree", "Folders", labels_from_folders=True)
    assert result["files"] == 6 and result["instances"] == 6
    assert list(editor.labels) == ["cat", "dog", "traffic light"]
    tags = {s["file"]["name"]: s["tags"] for s in editor.dataset("Folders").with_options(decode=None)}
    assert tags == {name: [cls] for name, cls in classes.items()}
    assert editor.import_images(tmp_path / "tree", "Folders", labels_from_folders=True)["skipped"] == 6
    plain = editor.import_images(tmp_path / "tree", "Plain")
    assert plain["files"] == 6 and plain["instances"] == 0


def test_import_images_refuses_loose_files_with_labels_from_folders(editor: Project, tmp_path: Path) -> None:
    _image_folder(tmp_path / "tree")
    Image.new("RGB", (8, 8)).save(tmp_path / "tree" / "loose.png")
    with pytest.raises(InvalidInput, match=r"loose\.png: is not inside a class folder"):
        editor.import_images(tmp_path / "tree", labels_from_folders=True)
    with pytest.raises(InvalidInput, match="no such folder"):
        editor.import_images(tmp_path / "nowhere")


def test_upload_many_is_one_commit(editor: Project, tmp_path: Path) -> None:
    editor.create_label("cat")
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"p{i}.png")
        paths[-1].write_bytes(png(20 + i, 10, (i, 9, 9)))
    rev = editor.revision
    seen: list[tuple[int, int]] = []
    result = editor.create_dataset("Many").upload_many(
        [
            *paths,
            {
                "data": png(30, 30, (7, 7, 7)),
                "name": "bytes.png",
                "metadata": {"split": "val"},
                "instances": [
                    {"type": "box", "label_name": "cat", "x_min": 1, "y_min": 2, "x_max": 9, "y_max": 8}
                ],
            },
        ],
        progress=lambda n, total: seen.append((n, total)),
    )
    assert result["files"] == 5 and result["instances"] == 1
    assert editor.revision == rev + 2, "one commit for the dataset, one for all five files"
    assert seen[-1] == (5, 5)
    view = editor.dataset("Many").with_options(decode=None)
    assert sorted(s["file"]["name"] for s in view) == ["bytes.png", "p0.png", "p1.png", "p2.png", "p3.png"]
    assert editor.dataset("Many").upload_many(paths, progress=False)["skipped"] == 4
    with pytest.raises(ValueError, match="exactly one of 'path' and 'data'"):
        editor.dataset("Many").upload_many([{"name": "x.png"}], progress=False)


def test_diffgram_style_instances_are_accepted_as_they_are(editor: Project) -> None:
    cat = editor.create_label("cat")
    editor.create_label("dog")
    dog_index = editor.labels["dog"]
    made = editor.upload(
        "Default",
        data=png(),
        filename="dg.png",
        instances=[
            {"type": "box", "x_min": 1, "y_min": 2, "x_max": 30, "y_max": 40, "label_file_id": dog_index},
            {"type": "box", "x_min": 3, "y_min": 3, "x_max": 9, "y_max": 9, "label_name": "cat"},
            {
                "type": "polygon",
                "label_name": "cat",
                "points": [{"x": 1, "y": 1}, {"x": 9, "y": 1}, {"x": 5, "y": 8}],
            },
        ],
    )
    assert made["instances"] == 3 and cat["name"] == "cat"
    sample = editor.dataset("Default")[0]
    assert [(i["type"], i["label"], i["bbox"]) for i in sample["instances"]] == [
        ("box", "dog", [1, 2, 30, 40]),
        ("box", "cat", [3, 3, 9, 9]),
        ("polygon", "cat", [1, 1, 9, 8]),
    ]
    with pytest.raises(InvalidInput) as info:
        editor.upload(
            "Default",
            data=png(),
            filename="bad.png",
            instances=[{"type": "box", "x_min": 1, "y_min": 1, "x_max": 2, "y_max": 2, "label_file_id": 99}],
        )
    assert info.value.detail["field"] == "instances[0].label_file_id"


# --- confinement ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["../outside.png", "/etc/hostname", "a/../../outside.png", "..\\outside.png"])
def test_coco_reads_only_inside_its_images_folder(editor: Project, tmp_path: Path, bad: str) -> None:
    ann = make_coco(tmp_path / "set", 3, seed=5)
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.png")
    coco = json.loads(ann.read_text())
    coco["images"][1]["file_name"] = bad
    rev = editor.revision
    with pytest.raises(InvalidInput) as info:
        editor.import_coco(coco, tmp_path / "set" / "images")
    assert info.value.detail["field"] == "images[1].file_name"
    assert editor.revision == rev


def test_annostream_json_reads_only_inside_its_folder(editor: Project, tmp_path: Path) -> None:
    editor.upload("Default", data=png(), filename="a.png")
    editor.dataset("Default").export(tmp_path / "out", "json")
    lines = (tmp_path / "out" / "files.jsonl").read_text().splitlines()
    line = json.loads(lines[0])
    line["image"] = "../../secret.png"
    (tmp_path / "out" / "files.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(InvalidInput, match="climbs out"):
        editor.import_format("json", tmp_path / "out", dataset="Copy")


def test_the_server_never_reads_a_path_a_record_names(server_store: tuple[str, Path]) -> None:
    url, store_dir = server_store
    p = new_project("http", url, store_dir, prefix="srv", vocabulary=False)
    body = b"\n".join(
        orjson.dumps(x)
        for x in (
            {"labels": [], "attribute_groups": []},
            {
                "where": "r",
                "name": "hostname",
                "image_path": "/etc/hostname",
                "metadata": {},
                "instances": [],
            },
        )
    )
    r = _post_records(p, body)
    assert r.status_code == 422 and "names no image" in r.json()["error"]["message"]


# --- staged blobs, scoped by project ---------------------------------------------------------


def _auth(p: Project) -> Any:
    return p.transport._auth  # type: ignore[attr-defined]


def _post_records(
    p: Project, body: bytes, key: str | None = None, dataset: str = "Default"
) -> httpx.Response:
    headers = {"Content-Type": "application/x-ndjson", **({"Idempotency-Key": key} if key else {})}
    return httpx.post(
        f"{p.host}/api/v2/projects/{p.string_id}/datasets/{dataset}/import:records",
        content=body,
        headers=headers,
        auth=_auth(p),
        timeout=30,
    )


def _records_body(*records: dict[str, Any]) -> bytes:
    return b"\n".join(orjson.dumps(r) for r in ({"labels": [], "attribute_groups": []}, *records)) + b"\n"


def test_a_record_names_only_blobs_of_its_own_project(server_store: tuple[str, Path]) -> None:
    url, store_dir = server_store
    owner = new_project("http", url, store_dir, prefix="own", vocabulary=False)
    secret = owner.upload("Default", data=png(color=(200, 1, 1)), filename="secret.png")["sha256"]
    thief = new_project("http", url, store_dir, prefix="thief", vocabulary=False)
    answers = []
    for sha in (secret, "ab" * 32):
        r = _post_records(thief, _records_body({"where": "r", "name": "x.png", "sha256": sha}))
        assert r.status_code == 422
        answers.append(r.json()["error"]["message"].replace(sha, "<sha>"))
    assert answers[0] == answers[1], "the answer does not tell whether a hash exists elsewhere"
    assert thief.revision == 0
    with pytest.raises(NotFound):
        thief.transport.blob(thief.string_id, secret)
    # staged for this project: accepted; held by it (after the import): accepted again
    staged = httpx.put(
        f"{url}/api/v2/projects/{thief.string_id}/blobs", content=png(color=(200, 1, 1)), auth=_auth(thief)
    ).json()["sha256"]
    assert staged == secret
    ok = _post_records(thief, _records_body({"where": "r", "name": "mine.png", "sha256": secret}))
    assert ok.status_code == 200 and ok.json()["files"] == 1
    again = _post_records(thief, _records_body({"where": "r", "name": "again.png", "sha256": secret}))
    assert again.status_code == 200 and again.json()["files"] == 1


def test_embedded_service_applies_the_same_scope(server_store: tuple[str, Path]) -> None:
    url, store_dir = server_store
    owner = new_project("embedded", url, store_dir, prefix="own-e", vocabulary=False)
    secret = owner.upload("Default", data=png(color=(3, 200, 1)), filename="s.png")["sha256"]
    other = new_project("embedded", url, store_dir, prefix="oth-e", vocabulary=False)
    store = Store.open(store_dir)
    ref = authorize(store, LOCAL, other.string_id, "editor")
    source = ImportSource([], [], iter([{"where": "r", "name": "s.png", "sha256": secret}]), 1)
    with pytest.raises(InvalidInput, match=r"no blob .* is staged for or held by project"):
        imports.commit_records(store, ref, "Default", source)
    stage_blobs(store, ref, [(png(color=(3, 200, 1)), "body")])
    source = ImportSource([], [], iter([{"where": "r", "name": "s.png", "sha256": secret}]), 1)
    assert imports.commit_records(store, ref, "Default", source)["files"] == 1
    store.close()


# --- malformed records -----------------------------------------------------------------------

BAD_RECORDS = [
    ({"where": "r1", "name": "a.png", "sha256": "XYZ" * 20}, "r1.sha256"),
    ({"where": "r1", "name": "a.png", "sha256": "g" * 64}, "r1.sha256"),
    ({"where": "r1", "name": "a.png", "sha256": None}, "r1.sha256"),
    ({"where": "r1", "name": "a.png", "sha256": "<SHA>", "metadata": {"a\u0000b": 1}}, "r1.metadata"),
    ({"where": "r1", "name": "a.png", "sha256": "<SHA>", "metadata": [1, 2]}, "r1.metadata"),
    ({"where": "r1", "name": "a.png", "sha256": "<SHA>", "metadata": {"x": "nul\u0000"}}, "r1.metadata.x"),
    ({"where": "r1", "name": "../a.png", "sha256": "<SHA>"}, "r1.name"),
    ({"where": "r1", "name": None, "sha256": "<SHA>"}, "r1.name"),
    ({"where": "r1", "name": "a.png", "sha256": "<SHA>", "width": "wide"}, "r1.width"),
    ({"where": "r1", "name": "a.png", "sha256": "<SHA>", "height": 2**40}, "r1.height"),
    ({"where": "r1", "name": "a.png", "sha256": "<SHA>", "instances": {"type": "box"}}, "r1.instances"),
    ({"where": "r1", "name": "a.png", "sha256": "<SHA>", "instances": [7]}, "r1.instances[0]"),
    (
        {
            "where": "r1",
            "name": "a.png",
            "sha256": "<SHA>",
            "instances": [
                {
                    "type": "box",
                    "label": "zebra",
                    "geometry": {"x_min": 0, "y_min": 0, "x_max": 1, "y_max": 1},
                }
            ],
        },
        "r1.instances[0].label",
    ),
    ([1, 2], "record 2"),
]


@pytest.mark.parametrize("record, field", BAD_RECORDS, ids=[f for _, f in BAD_RECORDS])
def test_malformed_record_is_422_naming_it(server_store: tuple[str, Path], record: Any, field: str) -> None:
    url, store_dir = server_store
    p = new_project("http", url, store_dir, prefix="bad", vocabulary=False)
    sha = httpx.put(f"{url}/api/v2/projects/{p.string_id}/blobs", content=png(), auth=_auth(p)).json()[
        "sha256"
    ]
    if isinstance(record, dict) and record.get("sha256") == "<SHA>":
        record = {**record, "sha256": sha}
    good = {"where": "r0", "name": "good.png", "sha256": sha}
    r = _post_records(p, _records_body(good, record))
    assert r.status_code == 422, r.text
    body = r.json()["error"]
    assert field in body["message"]
    assert (body["detail"].get("field") or body["detail"].get("record")) == field
    assert p.revision == 0, "a failed import writes nothing"
    with pytest.raises(NotFound):
        p.dataset("Default").ids  # noqa: B018 - reading the ids asks for the dataset


def test_many_malformed_records_name_the_first(server_store: tuple[str, Path]) -> None:
    url, store_dir = server_store
    p = new_project("http", url, store_dir, prefix="many", vocabulary=False)
    body = _records_body(
        *({"where": f"rec {i}", "name": f"{i}.png", "sha256": f"{i:x}", "metadata": [i]} for i in range(2000))
    )
    r = _post_records(p, body)
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("rec 0.metadata")
    huge = b'{"labels": []}\n{"where": "r", "name": "a.png", "width": 100000000000000000000000}\n'
    for garbage in (b"not json\n", b"[1]\n", b'{"labels": 5}\n', b'{"labels": [{"nope": 1}]}\n', huge):
        r = _post_records(p, garbage)
        assert r.status_code == 422, (garbage, r.text)
    assert p.revision == 0


# --- idempotency keys -------------------------------------------------------------------------


def test_same_idempotency_key_commits_once(server_store: tuple[str, Path]) -> None:
    url, store_dir = server_store
    p = new_project("http", url, store_dir, prefix="key", vocabulary=False)
    sha = httpx.put(f"{url}/api/v2/projects/{p.string_id}/blobs", content=png(), auth=_auth(p)).json()[
        "sha256"
    ]
    body = _records_body({"where": "r", "name": "k.png", "sha256": sha})
    first = _post_records(p, body, key="import-1")
    second = _post_records(p, body, key="import-1")
    assert first.status_code == second.status_code == 200
    assert second.json() == {**first.json(), "replayed": True}
    assert p.revision == first.json()["revision"] and len(p.dataset("Default")) == 1
    third = _post_records(p, body, key="import-2", dataset="Other")
    assert third.json()["files"] == 1 and third.json()["revision"] == first.json()["revision"] + 1
    assert _post_records(p, body, key="bad key with spaces").status_code == 422
    other = new_project("http", url, store_dir, prefix="key", vocabulary=False)
    httpx.put(f"{url}/api/v2/projects/{other.string_id}/blobs", content=png(), auth=_auth(other))
    assert _post_records(other, body, key="import-1").json()["files"] == 1, "keys are per project"


def test_embedded_import_with_a_known_key_answers_the_first_result(editor: Project, tmp_path: Path) -> None:
    ann = make_coco(tmp_path, 3, seed=9)
    from annostream.formats.coco import read_coco

    t = editor.transport
    first = t.import_source(
        editor.string_id, "K", read_coco(ann, tmp_path / "images"), "coco", key="k-1", duplicates="keep"
    )
    again = t.import_source(
        editor.string_id, "K", read_coco(ann, tmp_path / "images"), "coco", key="k-1", duplicates="keep"
    )
    assert again == {**first, "replayed": True}
    assert len(editor.dataset("K")) == 3


def test_failed_http_import_leaves_only_collectable_staged_blobs(
    server_store: tuple[str, Path], tmp_path: Path
) -> None:
    from datetime import timedelta

    from annostream.service.revisions import collect_garbage
    from tests.conftest import blob_names

    url, store_dir = server_store
    p = new_project("http", url, store_dir, prefix="gc", vocabulary=False)
    ann = make_coco(tmp_path, 4, seed=12)
    coco = json.loads(ann.read_text())
    coco["annotations"][-1]["category_id"] = 77  # the reader refuses it before anything is staged
    before = set(blob_names(store_dir))
    with pytest.raises(InvalidInput, match="category_id 77"):
        p.import_coco(coco, tmp_path / "images")
    assert set(blob_names(store_dir)) == before
    # images staged over HTTP, then a commit that fails: nothing referenced, gc collects them
    shas = [
        httpx.put(
            f"{url}/api/v2/projects/{p.string_id}/blobs", auth=_auth(p), content=png(color=(i, 66, 99))
        ).json()["sha256"]
        for i in range(3)
    ]
    body = _records_body(
        *({"where": f"r{i}", "name": f"{i}.png", "sha256": s} for i, s in enumerate(shas)),
        {"where": "r9", "name": "x.png", "sha256": shas[0], "metadata": [9]},
    )
    assert _post_records(p, body).status_code == 422
    assert set(shas) <= set(blob_names(store_dir))
    store = Store.open(store_dir)
    report = collect_garbage(store, timedelta(days=1), project=p.string_id, staged_grace=timedelta(0))
    store.close()
    assert report.staged >= 3 and not set(shas) & set(blob_names(store_dir))


def test_stage_route_refuses_what_is_not_an_image(server_store: tuple[str, Path]) -> None:
    url, store_dir = server_store
    p = new_project("http", url, store_dir, prefix="stage", vocabulary=False)
    r = httpx.put(f"{url}/api/v2/projects/{p.string_id}/blobs", content=b"%PDF-1.4", auth=_auth(p))
    assert r.status_code == 422 and "not a readable image" in r.json()["error"]["message"]
    anon = httpx.put(f"{url}/api/v2/projects/{p.string_id}/blobs", content=png())
    assert anon.status_code == 401
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    one = httpx.put(f"{url}/api/v2/projects/{p.string_id}/blobs", content=buf.getvalue(), auth=_auth(p))
    two = httpx.put(f"{url}/api/v2/projects/{p.string_id}/blobs", content=buf.getvalue(), auth=_auth(p))
    assert one.json() == two.json(), "staging is idempotent (keyed by sha256)"


class _LosesOneReply:
    """A TCP proxy on loopback that forwards everything, except that it drops the server's reply
    to the first import post: the server commits, the client sees the connection break."""

    def __init__(self, upstream: str) -> None:
        import socket
        import threading
        from urllib.parse import urlparse

        parsed = urlparse(upstream)
        self.target = (parsed.hostname, parsed.port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.dropped = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            state = {"import": False}
            threading.Thread(target=self._up, args=(client, server, state), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, state), daemon=True).start()

    def _up(self, client: Any, server: Any, state: dict[str, bool]) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if b"import:records" in data:
                    state["import"] = True
                server.sendall(data)
        with contextlib.suppress(OSError):
            server.shutdown(1)

    def _down(self, server: Any, client: Any, state: dict[str, bool]) -> None:
        with contextlib.suppress(OSError):
            while data := server.recv(65536):
                with self.lock:
                    drop = state["import"] and self.dropped == 0
                    if drop:
                        self.dropped += 1
                if drop:
                    break
                client.sendall(data)
        for sock in (client, server):
            with contextlib.suppress(OSError):
                sock.shutdown(2)  # wakes the other pump too; close alone would not send FIN
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(2)  # wakes the accepting thread
        self.listener.close()


def test_a_lost_reply_is_retried_and_commits_once(server_store: tuple[str, Path], tmp_path: Path) -> None:
    url, store_dir = server_store
    p = new_project("http", url, store_dir, prefix="lost", vocabulary=False)
    key = p.transport._auth  # type: ignore[attr-defined]
    proxy = _LosesOneReply(url)
    try:
        through = Project(p.string_id, key[0], key[1], host=proxy.url)
        ann = make_coco(tmp_path, 5, seed=21)
        rev = p.revision
        result = through.import_coco(ann, tmp_path / "images")
    finally:
        proxy.close()
    assert proxy.dropped == 1, "the proxy did lose the first reply"
    assert result["files"] == 5 and result.get("replayed") is True
    assert p.revision == rev + 1 and len(p.dataset("Default")) == 5, "committed once"


@pytest.mark.parametrize(
    "metadata, field",
    [([1, 2], "metadata"), ({"a\u0000b": 1}, "metadata"), ({"k": ["ok", "n\u0000"]}, "metadata.k[1]")],
)
def test_upload_metadata_must_be_an_object_without_nul(editor: Project, metadata: Any, field: str) -> None:
    rev = editor.revision
    with pytest.raises(InvalidInput) as info:
        editor.upload("Default", data=png(), filename="m.png", metadata=metadata)
    assert info.value.detail["field"] == field
    assert editor.revision == rev


def test_coco_document_route_imports_staged_images(server_store: tuple[str, Path], tmp_path: Path) -> None:
    """``POST .../import`` (a COCO body whose images name staged blobs) rides the same pipeline."""
    url, store_dir = server_store
    p = new_project("http", url, store_dir, prefix="cocoroute", vocabulary=False)
    ann = make_instances_coco(tmp_path, 3, seed=30)
    coco = json.loads(ann.read_text())
    for img in coco["images"]:
        img["sha256"] = httpx.put(
            f"{url}/api/v2/projects/{p.string_id}/blobs",
            auth=_auth(p),
            content=(tmp_path / "images" / img["file_name"]).read_bytes(),
        ).json()["sha256"]
    route = f"{url}/api/v2/projects/{p.string_id}/datasets/Default/import"
    r = httpx.post(
        route, params={"shapes": "box"}, json=coco, auth=_auth(p), headers={"Idempotency-Key": "c1"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["files"] == 3 and r.json()["instances"] == len(coco["annotations"])
    again = httpx.post(
        route, params={"shapes": "box"}, json=coco, auth=_auth(p), headers={"Idempotency-Key": "c1"}
    )
    assert again.json()["replayed"] is True and p.revision == r.json()["revision"]
    meta = p.dataset("Default")[0]["file"]["metadata"]
    assert "sha256" not in meta and meta["coco_id"] == 1
    assert {i["type"] for s in p.dataset("Default").with_options(decode=None) for i in s["instances"]} == {
        "box"
    }
    coco["images"][0]["file_name"] = "../escape.jpg"
    bad = httpx.post(route, json=coco, auth=_auth(p))
    assert bad.status_code == 422 and bad.json()["error"]["detail"]["field"] == "images[0].file_name"
    assert httpx.post(route, params={"shapes": "mask"}, json=coco, auth=_auth(p)).status_code == 422
    assert httpx.post(route, json=[1, 2], auth=_auth(p)).status_code == 422
