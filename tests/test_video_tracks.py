"""Tracks and events on videos: stored with revisions, interpolated when asked, through the
JSON, Diffgram JSON and COCO exports and back; on both transports."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annostream import InvalidInput, Project
from tests.revhelpers import new_project
from tests.videos import make_video, read_number

TRANSPORTS = ["http", "embedded"]


def box(frame: int, x0: float, y0: float, x1: float, y1: float, label: str = "cat", **kw: object) -> dict:
    return {
        "type": "box",
        "label": label,
        "frame_number": frame,
        "geometry": {"x_min": x0, "y_min": y0, "x_max": x1, "y_max": y1},
        **kw,
    }


INSTANCES = [
    box(0, 0, 0, 20, 10, track_id=1),
    box(10, 40, 10, 80, 30, track_id=1),
    box(5, 100, 0, 120, 16, "dog", track_id=2),
    box(12, 1, 1, 5, 5, "dog"),
    box(7, 50, 5, 60, 15, track_id=1, keyframe=False),  # a stored interpolated box
    {"type": "event", "label": "lane_change", "geometry": {"start": 3, "end": 12}, "attributes": {}},
    {"type": "event", "label": "lane_change", "geometry": {"start": 20, "end": 29}},
]


@pytest.fixture(params=TRANSPORTS)
def editor(request: pytest.FixtureRequest, server_store: tuple[str, Path]) -> Project:
    url, store_dir = server_store
    project = new_project(request.param, url, store_dir, prefix="t")
    project.create_label("lane_change")
    project.upload("clips", data=make_video(30, "mp4"), filename="drive.mp4", instances=INSTANCES)
    return project


def _shape(instances: list[dict]) -> list[tuple]:
    return sorted(
        (
            i["type"],
            i["label"],
            i["frame_number"],
            i["track_id"],
            i["keyframe"],
            json.dumps(i["geometry"], sort_keys=True),
        )
        for i in instances
    )


def test_track_and_events_are_stored(editor: Project) -> None:
    item = editor.dataset("clips")[0]
    assert _shape(item["instances"]) == _shape(
        [
            {
                **i,
                "frame_number": i.get("frame_number"),
                "track_id": i.get("track_id"),
                "keyframe": i.get("keyframe", True if i.get("track_id") else None),
                "geometry": {k: float(v) if i["type"] == "box" else v for k, v in i["geometry"].items()},
            }
            for i in INSTANCES
        ]
    )


def test_interpolated_boxes_are_the_linear_interpolation(editor: Project) -> None:
    frames = editor.dataset("clips").frames(interpolate=True)
    for k in range(1, 10):
        sample = frames[k]
        track1 = [i for i in sample["instances"] if i["track_id"] == 1]
        assert len(track1) == 1
        if k == 7:
            assert track1[0]["keyframe"] is False and track1[0]["bbox"] == [50, 5, 60, 15]
            continue
        t = k / 10
        want = [0 + 40 * t, 0 + 10 * t, 20 + 60 * t, 10 + 20 * t]
        assert track1[0]["interpolated"] and track1[0]["keyframe"] is False
        assert np.allclose(track1[0]["bbox"], want)
        assert read_number(sample["image"]) == k
        assert list(sample["track_ids"]).count(1) == 1
    plain = editor.dataset("clips").frames()
    assert [i["track_id"] for i in plain[4]["instances"]] == []
    assert plain[5]["labels"] == ["dog"] and list(plain[5]["track_ids"]) == [2]
    assert [e["start"] for e in plain[12]["events"]] == [3] and plain[15]["events"] == []


def test_json_and_diffgram_export_reimport_keep_tracks_and_events(editor: Project, tmp_path: Path) -> None:
    ds = editor.dataset("clips")
    before = _shape(ds[0]["instances"])
    for fmt in ("json", "diffgram"):
        out = tmp_path / fmt
        ds.export(out, fmt)
        path = out if fmt == "json" else out / "diffgram.json"
        made = editor.import_format(fmt, path, dataset=f"copy-{fmt}")
        assert made["files"] == 1
        copy = editor.dataset(f"copy-{fmt}")[0]
        assert copy["file"]["type"] == "video" and copy["file"]["frame_count"] == 30
        assert _shape(copy["instances"]) == before, fmt
    seqs = next(
        v
        for k, v in json.loads((tmp_path / "diffgram" / "diffgram.json").read_text()).items()
        if isinstance(v, dict) and "sequence_list" in v
    )["sequence_list"]
    assert [(s["number"], s["keyframe_list"]["frame_number_list"]) for s in seqs] == [(1, [0, 10]), (2, [5])]


def test_coco_export_writes_annotated_frames_as_images(editor: Project, tmp_path: Path) -> None:
    editor.dataset("clips").export(tmp_path / "coco", "coco")
    coco = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    frames = sorted(img["frame_number"] for img in coco["images"])
    assert frames == [0, 5, 7, 10, 12]
    for img in coco["images"]:
        pixels = np.asarray(
            Image.open(io.BytesIO((tmp_path / "coco" / "images" / img["file_name"]).read_bytes()))
        )
        assert read_number(pixels) == img["frame_number"]
    by_image = {img["id"]: img["frame_number"] for img in coco["images"]}
    tracks = sorted((by_image[a["image_id"]], a.get("track_id")) for a in coco["annotations"])
    assert tracks == [(0, 1), (5, 2), (7, 1), (10, 1), (12, None)]


def test_edits_of_a_track_are_revisions(editor: Project) -> None:
    ds = editor.dataset("clips")
    before = ds.snapshot()
    file_id = int(ds.ids[0])
    editor.write_instances(file_id, [box(20, 0, 0, 10, 10, track_id=1)])
    assert len([i for i in editor.dataset("clips")[0]["instances"] if i["track_id"] == 1]) == 4
    assert len([i for i in before[0]["instances"] if i["track_id"] == 1]) == 3


def test_bad_events_and_frames_are_422(editor: Project) -> None:
    file_id = int(editor.dataset("clips").ids[0])
    for bad, field in [
        ({"type": "event", "label": "lane_change", "geometry": {"start": 3, "end": 30}}, "end"),
        ({"type": "event", "label": "lane_change", "geometry": {"start": 5, "end": 2}}, "geometry"),
        (box(30, 0, 0, 1, 1), "frame_number"),
        ({"type": "span", "label": "cat", "geometry": {"start": 0, "end": 2}}, "belongs to a text"),
    ]:
        with pytest.raises(InvalidInput, match=field):
            editor.write_instances(file_id, [bad])
