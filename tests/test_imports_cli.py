"""The import commands through the real ``annostream`` entry point: bad input is one line
naming the file and what was expected; ``--shapes``, ``import images``, re-imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from annostream import Project
from tests.conftest import make_coco


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("ANNOSTREAM_DATA", None)
    return subprocess.run(
        [sys.executable, "-m", "annostream.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def store(tmp_path: Path) -> Path:
    data = tmp_path / "store"
    assert cli("project", "create", "p", "--data", data).returncode == 0
    return data


def _one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_import_coco_bad_input_is_one_line(store: Path, tmp_path: Path) -> None:
    jpeg = tmp_path / "photo.jpg"
    Image.new("RGB", (8, 8)).save(jpeg)
    as_list = tmp_path / "list.json"
    as_list.write_text("[1, 2]")
    images = tmp_path / "imgs"
    images.mkdir()
    for path, expected in (
        (jpeg, "not valid JSON"),
        (as_list, "a JSON list, not an object"),
        (tmp_path / "missing.json", "no such file"),
    ):
        done = cli("import", "coco", path, "--images", images, "--project", "p", "--data", store)
        _one_line_error(done, str(path), expected, "expected a COCO annotations JSON file")
    ann = make_coco(tmp_path / "c", 2)
    done = cli("import", "coco", ann, "--images", tmp_path / "nope", "--project", "p", "--data", store)
    _one_line_error(done, str(tmp_path / "nope"), "no such folder")


def test_import_coco_shapes_box_then_reimport_skips(store: Path, tmp_path: Path) -> None:
    ann = make_coco(tmp_path / "c", 5, seed=3)
    coco = json.loads(ann.read_text())
    args = ("import", "coco", ann, "--images", tmp_path / "c" / "images", "--project", "p", "--data", store)
    done = cli(*args, "--shapes", "box")
    assert done.returncode == 0, done.stderr
    assert f"imported 5 files and {len(coco['annotations'])} instances" in done.stdout
    types = {
        i["type"]
        for s in Project("p", host=f"file://{store}").dataset("Default").with_options(decode=None)
        for i in s["instances"]
    }
    assert types == {"box"}
    again = cli(*args)
    assert again.returncode == 0 and "imported 0 files" in again.stdout
    assert "skipped 5 already in the dataset" in again.stdout
    kept = cli(*args, "--keep-duplicates")
    assert "imported 5 files" in kept.stdout
    bad = cli(*args, "--shapes", "mask")
    assert bad.returncode != 0 and "--shapes" in bad.stderr


def test_import_images_from_an_image_folder(store: Path, tmp_path: Path) -> None:
    for cls in ("ant", "bee"):
        (tmp_path / "tree" / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (10, 10), (i, 50, 50)).save(tmp_path / "tree" / cls / f"{i}.jpg")
    done = cli(
        "import",
        "images",
        tmp_path / "tree",
        "--project",
        "p",
        "--dataset",
        "bugs",
        "--labels-from-folders",
        "--data",
        store,
    )
    assert done.returncode == 0, done.stderr
    assert "imported 4 files and 4 instances into p/bugs" in done.stdout
    ds = Project("p", host=f"file://{store}").dataset("bugs")
    assert sorted((s["file"]["name"], tuple(s["tags"])) for s in ds.with_options(decode=None)) == [
        ("ant/0.jpg", ("ant",)),
        ("ant/1.jpg", ("ant",)),
        ("bee/0.jpg", ("bee",)),
        ("bee/1.jpg", ("bee",)),
    ]
    _one_line_error(
        cli("import", "images", tmp_path / "void", "--project", "p", "--data", store),
        "void",
        "no such folder",
    )
