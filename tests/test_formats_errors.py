"""Bad input to the format imports: one clear error naming file and record, nothing written.
Also the CLI's export and import commands, on a local store and against a server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from annostream import InvalidInput, NotFound, Project
from annostream.cli import app
from tests.conftest import Source, make_coco
from tests.revhelpers import new_project

runner = CliRunner()


@pytest.fixture(params=["http", "embedded"])
def fresh(request: pytest.FixtureRequest, server_store: tuple[str, Path]) -> Project:
    url, store_dir = server_store
    return new_project(request.param, url, store_dir, prefix="bad", vocabulary=False)


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory, source: Source) -> Path:
    root = tmp_path_factory.mktemp("exports")
    ds = Project("coco-dataset", host=f"file://{source.store_dir}").dataset("Default")
    for fmt in ("json", "yolo", "diffgram"):
        ds.export(root / fmt, format=fmt)
    return root


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst, symlinks=True)
    return dst


def _assert_nothing_written(project: Project, rev: int, dataset: str) -> None:
    assert project.revision == rev
    assert dict(project.labels) == {}
    with pytest.raises(NotFound):
        project.dataset(dataset)


def test_truncated_jsonl_names_file_and_line(fresh: Project, exports: Path, tmp_path: Path) -> None:
    folder = _copy(exports / "json", tmp_path / "json")
    data = (folder / "files.jsonl").read_bytes()
    (folder / "files.jsonl").write_bytes(data[: len(data) - 40])
    n_lines = data.count(b"\n")
    rev = fresh.revision
    with pytest.raises(InvalidInput, match=rf"files.jsonl line {n_lines}: not valid JSON") as info:
        fresh.import_format("json", folder, dataset="T")
    assert "\n" not in str(info.value)
    _assert_nothing_written(fresh, rev, "T")


def test_truncated_header_and_truncated_diffgram(fresh: Project, exports: Path, tmp_path: Path) -> None:
    folder = _copy(exports / "json", tmp_path / "json")
    (folder / "export.json").write_text((folder / "export.json").read_text()[:50])
    with pytest.raises(InvalidInput, match=r"export.json: not valid JSON"):
        fresh.import_format("json", folder)
    dg = _copy(exports / "diffgram", tmp_path / "dg") / "diffgram.json"
    text = dg.read_text()
    dg.write_text(text[: len(text) * 2 // 3])
    rev = fresh.revision
    with pytest.raises(InvalidInput, match=r"diffgram.json: not valid JSON after file \d+, truncated"):
        fresh.import_format("json", dg, dataset="D")
    _assert_nothing_written(fresh, rev, "D")


def test_yolo_class_out_of_range_names_txt_and_line(fresh: Project, exports: Path, tmp_path: Path) -> None:
    folder = _copy(exports / "yolo", tmp_path / "yolo")
    victim = sorted((folder / "labels").iterdir())[5]
    victim.write_text(victim.read_text() + "9 0.5 0.5 0.1 0.1\n")
    line = len(victim.read_text().splitlines())
    rev = fresh.revision
    with pytest.raises(
        InvalidInput, match=rf"{victim.name} line {line}: class index 9 out of range \(data.yaml names 0..3\)"
    ):
        fresh.import_format("yolo", folder, dataset="Y")
    _assert_nothing_written(fresh, rev, "Y")


def test_bad_instance_deep_in_an_import_rolls_everything_back(
    fresh: Project, exports: Path, tmp_path: Path
) -> None:
    folder = _copy(exports / "json", tmp_path / "json")
    lines = (folder / "files.jsonl").read_text().splitlines()
    record = json.loads(lines[-1])
    record["instances"] = [
        {"type": "box", "label": "cat", "geometry": {"x_min": 1, "y_min": 1, "x_max": 9999, "y_max": 2}}
    ]
    lines[-1] = json.dumps(record)
    (folder / "files.jsonl").write_text("\n".join(lines) + "\n")
    rev = fresh.revision
    with pytest.raises(
        InvalidInput, match=rf"files.jsonl line {len(lines)} \('{record['name']}'\).instances\[0\]"
    ):
        fresh.import_format("json", folder, dataset="J")
    _assert_nothing_written(fresh, rev, "J")


def test_unknown_export_format_is_rejected_before_streaming(project: Project, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="unsupported export format 'voc'"):
        project.dataset("Default").export(tmp_path, format="voc")


def test_cli_export_and_imports(tmp_path: Path) -> None:
    data = tmp_path / "store"
    ann = make_coco(tmp_path / "coco", 6, seed=9)
    runner.invoke(app, ["project", "create", "c", "--data", str(data)])
    runner.invoke(
        app,
        [
            "import",
            "coco",
            str(ann),
            "--images",
            str(tmp_path / "coco" / "images"),
            "--project",
            "c",
            "--data",
            str(data),
        ],
    )
    for fmt in ("coco", "json", "yolo"):
        result = runner.invoke(
            app,
            ["export", "c", "Default", "--format", fmt, "--out", str(tmp_path / fmt), "--data", str(data)],
        )
        assert result.exit_code == 0, result.output
        assert "exported 6 files" in result.output
    sliced = runner.invoke(
        app,
        [
            "export",
            "c",
            "Default",
            "--format",
            "json",
            "--out",
            str(tmp_path / "s"),
            "--query",
            "labels.cat > 0",
            "--images",
            "link",
            "--data",
            str(data),
        ],
    )
    assert sliced.exit_code == 0, sliced.output
    assert all(p.is_symlink() for p in (tmp_path / "s" / "images").iterdir())
    for fmt, path in (("yolo", tmp_path / "yolo"), ("json", tmp_path / "json")):
        result = runner.invoke(
            app, ["import", fmt, str(path), "--project", "c", "--dataset", f"from-{fmt}", "--data", str(data)]
        )
        assert result.exit_code == 0, result.output
        assert "imported 6 files" in result.output
    coco = json.loads(ann.read_text())
    coco["annotations"][0]["image_id"] = 404
    ann.write_text(json.dumps(coco))
    bad = runner.invoke(
        app,
        [
            "import",
            "coco",
            str(ann),
            "--images",
            str(tmp_path / "coco" / "images"),
            "--project",
            "c",
            "--dataset",
            "bad",
            "--data",
            str(data),
        ],
    )
    assert bad.exit_code == 1
    assert "annotations[0] (id 1): image_id 404 is not in 'images'" in bad.output
    labels = tmp_path / "yolo" / "labels" / "img_00002.txt"
    labels.write_text("7 0.5 0.5 0.2 0.2\n")
    bad = runner.invoke(
        app,
        ["import", "yolo", str(tmp_path / "yolo"), "--project", "c", "--dataset", "bad", "--data", str(data)],
    )
    assert bad.exit_code == 1
    error_lines = [line for line in bad.output.splitlines() if line.strip()]
    assert len(error_lines) == 1 and "img_00002.txt line 1: class index 7 out of range" in error_lines[0]


def test_cli_export_from_a_server(source: Source, tmp_path: Path) -> None:
    viewer = source.viewer
    result = runner.invoke(
        app,
        [
            "export",
            "coco-dataset",
            "Default",
            "--format",
            "coco",
            "--out",
            str(tmp_path),
            "--host",
            source.url,
            "--client-id",
            viewer["client_id"],
            "--client-secret",
            viewer["client_secret"],
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "annotations.json").read_text())
    assert len(doc["images"]) == len(source.coco["images"])
    assert len(list((tmp_path / "images").iterdir())) == len(source.coco["images"])
