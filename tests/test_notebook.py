"""What a notebook shows (reprs called as Jupyter calls them), ``explore()`` URLs, and the
SDK's progress reporting; on both transports."""

from __future__ import annotations

import base64
import io
import pickle
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from annostream import Project, overlay
from annostream.client import progress
from annostream.client.sample import SampleDict
from tests.conftest import Source

SVG = "{http://www.w3.org/2000/svg}"


def _richest(ds: Any) -> dict[str, Any]:
    """A sample with boxes and at least one other kind of instance, if the data has one."""
    found = [ds[i] for i in range(min(len(ds), 20))]
    return max(found, key=lambda s: (len({i["type"] for i in s["instances"]}), len(s["instances"])))


def test_a_sample_is_still_a_dict(project: Project) -> None:
    sample = project.dataset("Default")[0]
    assert isinstance(sample, dict) and isinstance(sample, SampleDict)
    assert set(sample) >= {"image", "file", "instances", "boxes", "labels"}
    plain = dict(sample)
    assert plain.keys() == sample.keys() and type(plain) is dict
    again = pickle.loads(pickle.dumps({k: v for k, v in sample.items() if k != "image"}))
    assert again["file"] == sample["file"]
    copied = pickle.loads(pickle.dumps(SampleDict(file=sample["file"])))
    assert type(copied) is SampleDict and copied == {"file": sample["file"]}


def test_sample_html_is_the_picture_with_its_overlays(project: Project) -> None:
    sample = _richest(project.dataset("Default"))
    doc = ET.fromstring(sample._repr_html_())  # well-formed, or this raises
    svg = doc.find(f".//{SVG}svg")
    assert svg is not None
    f = sample["file"]
    assert svg.get("viewBox") == f"0 0 {f['width']} {f['height']}"
    href = svg.find(f"{SVG}image").get("href")
    assert href.startswith("data:image/jpeg;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(href.split(",", 1)[1]))).format == "JPEG"
    drawn = [el for el in svg.iter() if "inst" in (el.get("class") or "").split()]
    assert len(drawn) == len(overlay.shapes(sample["instances"])) == len(sample["instances"]) > 0
    by_id = {i["id"]: i for i in sample["instances"]}
    for el in drawn:
        inst = by_id[int(el.get("data-instance"))]
        if el.tag == f"{SVG}rect":
            x, y, w, h = (float(el.get(a)) for a in ("x", "y", "width", "height"))
            assert (x, y, x + w, y + h) == pytest.approx(tuple(inst["bbox"]), abs=0.01)
    assert f["name"] in "".join(doc.itertext())


def test_sample_png_draws_the_instances(project: Project) -> None:
    sample = _richest(project.dataset("Default"))
    png = Image.open(io.BytesIO(sample._repr_png_()))
    assert png.format == "PNG"
    plain = sample["image"].convert("RGB")
    assert png.size == plain.size  # small test images are not scaled
    box = next(i for i in sample["instances"] if i["type"] == "box")
    colour = Image.new("RGB", (1, 1), overlay.label_color(box["label_id"])).getpixel((0, 0))
    x0, y0 = (int(v) for v in box["bbox"][:2])
    near = {
        png.convert("RGB").getpixel((min(max(x, 0), png.width - 1), min(max(y, 0), png.height - 1)))
        for x in range(x0 - 1, x0 + 2)
        for y in range(y0 - 1, y0 + 2)
    }
    assert colour in near
    assert not np.array_equal(np.asarray(png.convert("RGB")), np.asarray(plain))


def test_sample_reprs_without_a_decoded_image(project: Project) -> None:
    raw = project.dataset("Default", decode=None)[0]
    assert Image.open(io.BytesIO(raw._repr_png_())).format == "PNG"
    ET.fromstring(raw._repr_html_())
    no_image = SampleDict({**raw, "image": None})
    assert no_image._repr_png_() is None
    ET.fromstring(no_image._repr_html_())


def test_view_reprs_show_count_query_revision_and_a_strip(project: Project) -> None:
    view = project.dataset("Default").slice("labels.cat >= 1")
    doc = ET.fromstring(view._repr_html_())
    text = "".join(doc.itertext())
    assert f"{len(view)} files" in text and "labels.cat &gt;= 1" not in text and "labels.cat >= 1" in text
    assert f"revision {view.revision}" in text
    assert len(doc.findall(f".//{SVG}svg")) == min(8, len(view))
    strip = Image.open(io.BytesIO(view._repr_png_()))
    assert strip.format == "PNG" and strip.width > strip.height


def test_labels_in_reprs_are_escaped() -> None:
    evil = '<img src=x onerror="alert(1)">'
    sample = SampleDict(
        {
            "image": Image.new("RGB", (20, 10)),
            "file": {"name": evil, "id": 1, "width": 20, "height": 10},
            "instances": [
                {"id": 1, "type": "box", "label": evil, "label_id": 1, "bbox": [1, 1, 5, 5], "geometry": {}}
            ],
        }
    )
    out = sample._repr_html_()
    ET.fromstring(out)
    assert "<img" not in out and "&lt;img" in out


def test_explore_gives_the_page_of_the_pinned_view(
    source: Source, capsys: pytest.CaptureFixture[str]
) -> None:
    key = source.viewer
    project = Project("coco-dataset", key["client_id"], key["client_secret"], host=source.url)
    view = project.dataset("Default").slice("labels.dog >= 1")
    url = view.explore()
    assert capsys.readouterr().out.strip() == url
    assert url.startswith(f"{source.url}/explore/p/coco-dataset/d/Default?")
    assert f"as_of={view.revision}" in url
    page = httpx.get(url, auth=(key["client_id"], key["client_secret"]))
    assert page.status_code == 200
    assert int(re.search(r'data-count="(\d+)"', page.text).group(1)) == len(view)
    assert project.explore() == f"{source.url}/explore/p/coco-dataset/"
    with pytest.raises(ValueError, match="index"):
        project.dataset("Default")[2:5].explore()
    local = Project("coco-dataset", host=f"file://{source.store_dir}")
    with pytest.raises(ValueError, match="annostream serve"):
        local.dataset("Default").explore()


def test_progress_reports_reach_a_callable_and_can_be_switched_off(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    view = project.dataset("Default")
    seen: list[tuple[int, int | None]] = []
    view.export(tmp_path / "out", "json", images=False, progress=lambda n, t: seen.append((n, t)))
    assert seen and [n for n, _ in seen] == sorted(n for n, _ in seen)
    saved: list[tuple[int, int | None]] = []
    copy = (
        view.slice("labels.cat >= 1")
        .snapshot()
        .save(tmp_path / "copy", progress=lambda n, t: saved.append((n, t)))
    )
    assert saved[-1] == (len(copy), len(copy)) and [n for n, _ in saved] == list(range(1, len(copy) + 1))
    monkeypatch.setenv(progress.ENV, "0")
    assert not progress.wanted(None) and progress.wanted(True)
    with progress.reporter("x", None) as report:
        assert report is None
    monkeypatch.setenv(progress.ENV, "1")
    with progress.reporter("x", None) as report:
        assert isinstance(report, progress._Bar)
    with progress.reporter("x", False) as report:
        assert report is None


def test_a_bar_draws_once_the_work_is_slow(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(progress, "DELAY", 0.0)
    with progress.reporter("copying", True) as report:
        assert report is not None
        report(3, 10)
        assert report.bar is not None
        task = report.bar.tasks[0]
        assert (task.completed, task.total, task.description) == (3, 10, "copying")
    with progress.waiting("counting", True):
        pass


@pytest.mark.parametrize("transport", ["http", "embedded"])
def test_a_video_frame_sample_shows_that_frame_with_its_instances(tmp_path: Path, transport: str) -> None:
    from fastapi.testclient import TestClient

    from annostream.client.transports import EmbeddedTransport, HttpTransport
    from annostream.server.app import create_app
    from annostream.store import Store
    from tests.explorer_site import VIDEO_FRAMES, video_instances
    from tests.videos import make_video, read_number

    local = EmbeddedTransport(tmp_path / "store", create=True)
    local.create_project("v", None, True)
    for name in ("cat", "dog"):
        local.create_label("v", name, None)
    local.upload_file("v", "Default", "clip.mp4", make_video(VIDEO_FRAMES), video_instances(), {})
    with TestClient(create_app(Store.open(tmp_path / "store"))) as client:
        if transport == "http":
            project = Project("v", transport=HttpTransport(str(client.base_url), client=client))
        else:
            project = Project("v", host=f"file://{tmp_path / 'store'}")
        frames = project.dataset("Default").frames()
        sample = frames[4]
        assert isinstance(sample, SampleDict) and sample["frame_number"] == 4
        doc = ET.fromstring(sample._repr_html_())
        svg = doc.find(f".//{SVG}svg")
        drawn = [el for el in svg.iter() if "inst" in (el.get("class") or "").split()]
        on_4 = [i for i in video_instances() if i.get("frame_number") == 4]
        assert len(drawn) == len(on_4) == 4
        rects = sorted(
            tuple(float(el.get(a)) for a in ("x", "y", "width", "height"))
            for el in drawn
            if el.tag == f"{SVG}rect"
        )
        want = sorted(
            (g["x_min"], g["y_min"], g["x_max"] - g["x_min"], g["y_max"] - g["y_min"])
            for g in (i["geometry"] for i in on_4 if i["type"] == "box")
        )
        assert rects == [tuple(float(v) for v in r) for r in want]
        href = svg.find(f"{SVG}image").get("href")
        shown = Image.open(io.BytesIO(base64.b64decode(href.split(",", 1)[1]))).convert("RGB")
        assert read_number(np.asarray(shown)) == 4
        png = Image.open(io.BytesIO(sample._repr_png_()))
        assert png.format == "PNG" and png.size == (sample["file"]["width"], sample["file"]["height"])
        assert frames[9]._repr_html_().count('class="inst ') == 0  # a frame without instances
