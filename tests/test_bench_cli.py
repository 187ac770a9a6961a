"""``annostream bench`` measures a store it is pointed at (figures are printed, not asserted)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from annostream.cli import app
from tests.conftest import make_coco

runner = CliRunner()


def test_bench_command_prints_its_figures(tmp_path: Path) -> None:
    data = tmp_path / "store"
    ann = make_coco(tmp_path / "coco", 10, seed=3)
    assert runner.invoke(app, ["project", "create", "p", "--data", str(data)]).exit_code == 0
    imported = runner.invoke(
        app,
        [
            "import",
            "coco",
            str(ann),
            "--images",
            str(tmp_path / "coco" / "images"),
            "--project",
            "p",
            "--data",
            str(data),
        ],
    )
    assert imported.exit_code == 0, imported.output
    result = runner.invoke(
        app,
        ["bench", "--project", "p", "--data", str(data), "--query", "file.id > 0"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    for figure in ("time to first batch", "to first item", "to count", "streaming rate", "decode rate"):
        assert figure in result.output
