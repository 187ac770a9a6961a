"""Static exports and imports, over HTTP (zip route) and embedded: round trips and outside readers."""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from annostream import Project
from tests.conftest import Source
from tests.revhelpers import new_project


@pytest.fixture(params=["http", "embedded"])
def fresh(request: pytest.FixtureRequest, server_store: tuple[str, Path]) -> Project:
    """An empty project to import into, reached like ``project`` is."""
    url, store_dir = server_store
    return new_project(request.param, url, store_dir, prefix="fmt", vocabulary=False)


def _close(a: Any, b: Any, where: str = "") -> None:
    """Equal field by field, floats within 1e-6."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-6), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_coco_round_trip_field_by_field(project: Project, source: Source, tmp_path: Path) -> None:
    manifest = project.dataset("Default").export(tmp_path, format="coco")
    out = json.loads((tmp_path / "annotations.json").read_text())
    orig = source.coco
    assert manifest["files"] == len(orig["images"]) and manifest["instances"] == len(orig["annotations"])

    cats = {c["name"]: c for c in out["categories"]}
    for c in orig["categories"]:
        _close(cats[c["name"]], c, f"category {c['name']}")

    images = {img["file_name"]: img for img in out["images"]}
    new_image_id = {}
    for img in orig["images"]:
        got = images[img["file_name"]]
        assert got["coco_id"] == img["id"]
        _close(
            {k: v for k, v in got.items() if k not in ("id", "coco_id")},
            {k: v for k, v in img.items() if k != "id"},
            img["file_name"],
        )
        assert (tmp_path / "images" / img["file_name"]).read_bytes() == (
            source.images_dir / img["file_name"]
        ).read_bytes()
        new_image_id[img["id"]] = got["id"]

    cat_name = {c["id"]: c["name"] for c in orig["categories"]}
    out_cat_name = {c["id"]: c["name"] for c in out["categories"]}
    by_image: dict[int, list[dict]] = defaultdict(list)
    for ann in out["annotations"]:
        by_image[ann["image_id"]].append(ann)
    orig_by_image: dict[int, list[dict]] = defaultdict(list)
    for ann in orig["annotations"]:
        orig_by_image[new_image_id[ann["image_id"]]].append(ann)
    assert set(by_image) <= set(orig_by_image)
    for image_id, anns in orig_by_image.items():
        got_anns = by_image[image_id]
        assert len(got_anns) == len(anns)
        for want, got in zip(anns, got_anns, strict=True):
            assert out_cat_name[got["category_id"]] == cat_name[want["category_id"]]
            strip = ("id", "image_id", "category_id")
            _close(
                {k: v for k, v in got.items() if k not in strip},
                {k: v for k, v in want.items() if k not in strip},
                f"annotation {want['id']}",
            )


def test_pycocotools_reads_our_coco_and_gt_scores_ap_1(
    project: Project, source: Source, tmp_path: Path
) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    project.dataset("Default").export(tmp_path, format="coco", images=False)
    assert not (tmp_path / "images").exists()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "annotations.json"))
        assert len(gt.imgs) == len(source.coco["images"])
        assert len(gt.anns) == len(source.coco["annotations"])
        assert len(gt.cats) == len(source.coco["categories"])
        assert sum(len(v) for v in gt.imgToAnns.values()) == len(gt.anns)
        dets = [
            {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
            for a in gt.anns.values()
        ]
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


def test_coco_ids_are_stable_across_exports_of_one_revision(project: Project, tmp_path: Path) -> None:
    view = project.dataset("Default").snapshot()
    docs = []
    for run in ("a", "b"):
        view.export(tmp_path / run, format="coco", images=False)
        doc = json.loads((tmp_path / run / "annotations.json").read_text())
        doc.pop("info")
        docs.append(doc)
    assert docs[0] == docs[1]


def test_slice_exports_only_its_files(project: Project, tmp_path: Path) -> None:
    view = project.dataset("Default").slice("labels.cat > 0")
    manifest = view.export(tmp_path, format="json", images=False)
    lines = (tmp_path / "files.jsonl").read_text().splitlines()
    assert manifest["files"] == len(lines) == len(view) > 0
    assert manifest["query"] == "labels.cat > 0"
    assert all(any(i["label"] == "cat" for i in json.loads(line)["instances"]) for line in lines)


def test_yolo_export_reads_back_to_pixels(project: Project, tmp_path: Path) -> None:
    ds = project.dataset("Default")
    ds.export(tmp_path, format="yolo")
    data = yaml.safe_load((tmp_path / "data.yaml").read_text())
    assert data["names"] == {lab_id - 1: name for name, lab_id in ds.labels.items()}
    for sample in ds.with_options(decode="bytes"):
        f = sample["file"]
        txt = tmp_path / "labels" / Path(f["name"]).with_suffix(".txt")
        assert (tmp_path / "images" / f["name"]).is_file()
        rows = [line.split() for line in txt.read_text().splitlines()]
        boxes = [i for i in sample["instances"] if i["bbox"] is not None]
        assert len(rows) == len(boxes)
        for row, inst in zip(rows, boxes, strict=True):
            cls, cx, cy, w, h = int(row[0]), *map(float, row[1:])
            assert data["names"][cls] == inst["label"]
            x0, y0 = (cx - w / 2) * f["width"], (cy - h / 2) * f["height"]
            x1, y1 = (cx + w / 2) * f["width"], (cy + h / 2) * f["height"]
            assert [x0, y0, x1, y1] == pytest.approx(inst["bbox"], abs=1e-3)


def test_yolo_segmentation_polygons_read_back(project: Project, tmp_path: Path) -> None:
    ds = project.dataset("Default")
    ds.export(tmp_path, format="yolo-seg", images=False)
    sample = next(
        s for s in ds.with_options(decode="bytes") if any(i["type"] == "polygon" for i in s["instances"])
    )
    f = sample["file"]
    rows = (tmp_path / "labels" / Path(f["name"]).with_suffix(".txt")).read_text().splitlines()
    drawable = [i for i in sample["instances"] if i["type"] in ("polygon", "box")]
    assert len(rows) == len(drawable)
    for row, inst in zip(rows, drawable, strict=True):
        values = list(map(float, row.split()[1:]))
        pixels = [[values[k] * f["width"], values[k + 1] * f["height"]] for k in range(0, len(values), 2)]
        if inst["type"] == "polygon":
            flat = [c for point in inst["geometry"]["points"] for c in point]
            assert [c for point in pixels for c in point] == pytest.approx(flat, abs=1e-3)


def _normalised(folder: Path) -> tuple[bytes, dict]:
    """files.jsonl with ids zeroed, and the header without ids, timestamps and provenance."""
    lines = re.sub(rb'"id":\d+', b'"id":0', (folder / "files.jsonl").read_bytes())
    header = json.loads((folder / "export.json").read_text())
    for key in ("exported_at", "revision", "project", "dataset"):
        header.pop(key)
    for lab in header["labels"]:
        lab.pop("id")
    return lines, header


def test_json_round_trip_is_byte_identical_apart_from_ids(
    project: Project, fresh: Project, tmp_path: Path
) -> None:
    project.dataset("Default").export(tmp_path / "first", format="json")
    imported = fresh.import_format("json", tmp_path / "first", dataset="Copy")
    assert imported["files"] == len(project.dataset("Default"))
    fresh.dataset("Copy").export(tmp_path / "second", format="json")
    first, second = _normalised(tmp_path / "first"), _normalised(tmp_path / "second")
    assert first[0] == second[0]
    assert first[1] == second[1]
    assert sorted(p.name for p in (tmp_path / "second" / "images").iterdir()) == sorted(
        p.name for p in (tmp_path / "first" / "images").iterdir()
    )


def test_yolo_and_diffgram_import_back(project: Project, fresh: Project, tmp_path: Path) -> None:
    ds = project.dataset("Default")
    ds.export(tmp_path / "yolo", format="yolo")
    ds.export(tmp_path / "dg", format="diffgram")
    n_boxes = sum(1 for s in ds.with_options(decode="bytes") for i in s["instances"] if i["bbox"] is not None)
    y = fresh.import_format("yolo", tmp_path / "yolo", dataset="FromYolo")
    assert y["files"] == len(ds) and y["instances"] == n_boxes
    d = fresh.import_format("json", tmp_path / "dg" / "diffgram.json", dataset="FromDiffgram")
    assert d["files"] == len(ds) and d["instances"] == sum(
        len(s["instances"]) for s in ds.with_options(decode="bytes")
    )
    back = fresh.dataset("FromDiffgram")
    orig = {s["file"]["name"]: s for s in ds.with_options(decode="bytes")}
    for sample in back.with_options(decode="bytes"):
        want = orig[sample["file"]["name"]]
        assert [i["label"] for i in sample["instances"]] == [i["label"] for i in want["instances"]]
        for got, exp in zip(sample["instances"], want["instances"], strict=True):
            assert got["bbox"] == pytest.approx(exp["bbox"])


def test_diffgram_writes_zero_coordinates_as_0(fresh: Project, tmp_path: Path) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 24)).save(buf, format="PNG")
    fresh.create_label("cat")
    fresh.upload(
        "Default",
        data=buf.getvalue(),
        filename="zero.png",
        instances=[
            {"type": "box", "label": "cat", "geometry": {"x_min": 0, "y_min": 0, "x_max": 10, "y_max": 5}},
            {"type": "point", "label": "cat", "geometry": {"x": 0, "y": 3}},
        ],
    )
    fresh.dataset("Default").export(tmp_path, format="diffgram")
    doc = json.loads((tmp_path / "diffgram.json").read_text())
    assert {"readme", "label_map", "label_colour_map", "export_info", "attribute_groups_reference"} <= set(
        doc
    )
    (entry,) = [v for k, v in doc.items() if k.isdigit()]
    box, point = entry["instance_list"]
    assert box["x_min"] == 0 and box["y_min"] == 0 and box["x_max"] == 10
    assert '"x_min":0,' in (tmp_path / "diffgram.json").read_text()
    assert point["points"] == [{"x": 0, "y": 3}]
    assert entry["image"]["width"] == 32 and entry["sequence_list"] == []
