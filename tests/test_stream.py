"""Streaming a dataset gives back exactly what was imported, on both transports."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from annostream import NotFound, Project
from tests.conftest import Source


@pytest.fixture
def project(wire_project: Project) -> Project:
    """These tests cross the wire: HTTP through a real server process (and embedded)."""
    return wire_project


def _expected(source: Source) -> dict[str, dict[str, Any]]:
    """Per file name: the COCO image and its annotations, in annotation-id order."""
    cats = {c["id"]: c["name"] for c in source.coco["categories"]}
    anns: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for a in source.coco["annotations"]:
        anns[a["image_id"]].append({**a, "label": cats[a["category_id"]]})
    return {img["file_name"]: {"image": img, "anns": anns[img["id"]]} for img in source.coco["images"]}


def test_len_and_ids(project: Project, source: Source) -> None:
    ds = project.directory.get(name="Default")
    assert len(ds) == len(source.coco["images"])
    assert list(ds.ids) == sorted(ds.ids)
    assert ds.revision == 1


def test_iteration_equals_source_exactly(project: Project, source: Source) -> None:
    expected = _expected(source)
    ds = project.dataset("Default")
    seen = set()
    for sample in ds:
        name = sample["file"]["name"]
        seen.add(name)
        want = expected[name]
        assert (sample["file"]["width"], sample["file"]["height"]) == (
            want["image"]["width"],
            want["image"]["height"],
        )
        assert sample["image"].size == (want["image"]["width"], want["image"]["height"])
        anns = want["anns"]
        assert sample["labels"] == [a["label"] for a in anns]
        boxes = np.array(
            [
                [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                for a in anns
            ],
            dtype=np.float32,
        ).reshape(-1, 4)
        np.testing.assert_allclose(sample["boxes"], boxes, rtol=0, atol=1e-4)
        assert sample["boxes"].shape == (len(anns), 4)
        assert sample["label_ids"].dtype == np.int64
        assert [ds.labels.names[i] for i in sample["label_ids"]] == sample["labels"]
        polys = [a["segmentation"][0] for a in anns if "segmentation" in a]
        assert len(sample["polygons"]) == len(polys)
        for got, flat in zip(sample["polygons"], polys, strict=True):
            np.testing.assert_allclose(got, np.array(flat, dtype=np.float32).reshape(-1, 2), atol=1e-4)
        kps = [a["keypoints"] for a in anns if "keypoints" in a]
        assert len(sample["keypoints"]) == len(kps)
        for got, flat in zip(sample["keypoints"], kps, strict=True):
            np.testing.assert_allclose(got, np.array(flat, dtype=np.float32).reshape(-1, 3), atol=1e-4)
    assert seen == set(expected)


def test_random_access_negative_and_slices(project: Project, source: Source) -> None:
    ds = project.dataset("Default")
    names = [s["file"]["name"] for s in ds]
    assert ds[7]["file"]["name"] == names[7]
    assert ds[-1]["file"]["name"] == names[-1]
    view = ds[10:20]
    assert len(view) == 10
    assert [s["file"]["name"] for s in view] == names[10:20]
    assert view[0]["file"]["name"] == names[10]
    assert [s["file"]["name"] for s in ds[::7]] == names[::7]
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_image_pixels_match_the_file(project: Project, source: Source) -> None:
    sample = project.dataset("Default")[3]
    original = Image.open(source.images_dir / sample["file"]["name"])
    assert np.array_equal(np.asarray(sample["image"]), np.asarray(original))


def test_label_ids_are_stable_and_contiguous(project: Project, source: Source) -> None:
    labels = project.dataset("Default").labels
    assert sorted(labels.values()) == list(range(1, len(source.coco["categories"]) + 1))
    assert labels["cat"] == 1 and labels["traffic light"] == 3
    assert labels.num_classes == len(source.coco["categories"]) + 1
    assert labels.specs["person"]["keypoints"] == ["nose", "left_eye", "right_eye"]


def test_unknown_dataset_and_project_name_themselves(project: Project, source: Source) -> None:
    with pytest.raises(NotFound, match="'Nope'"):
        project.directory.get(name="Nope")
    with pytest.raises(NotFound, match="'no-such-project'"):
        Project("no-such-project", host=project.host)


def test_directory_list(project: Project) -> None:
    listed = project.directory.list()
    assert [d["name"] for d in listed] == ["Default"]
    assert listed[0]["files"] == len(project.dataset("Default"))


def test_decode_modes(project: Project) -> None:
    ds = project.dataset("Default", decode="numpy")
    arr = ds[0]["image"]
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    raw = project.dataset("Default", decode=None)[0]["image"]
    assert isinstance(raw, bytes) and raw[:2] == b"\xff\xd8"


def test_file_urls_absolute_and_relative(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from annostream.client.transports import EmbeddedTransport, connect

    absolute = connect(f"file://{source.store_dir}")
    assert isinstance(absolute, EmbeddedTransport) and absolute.path == str(source.store_dir.resolve())
    monkeypatch.chdir(source.store_dir.parent)
    relative = connect(f"file://{source.store_dir.name}")
    assert isinstance(relative, EmbeddedTransport) and relative.path == absolute.path
