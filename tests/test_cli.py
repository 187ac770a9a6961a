"""The CLI on a local store and against a server: projects, keys, import, ls, query."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from annostream import Project
from annostream.cli import app
from annostream.server.launch import running_server
from tests.conftest import make_coco

runner = CliRunner()


def _key(output: str) -> tuple[str, str]:
    found = re.search(r"client_id=(\S+) client_secret=(\S+)", output)
    assert found, output
    return found.group(1), found.group(2)


def test_cli_end_to_end(tmp_path: Path) -> None:
    data = tmp_path / "store"
    ann = make_coco(tmp_path / "coco", 12, seed=5)
    created = runner.invoke(app, ["project", "create", "cli-proj", "--data", str(data)])
    assert created.exit_code == 0, created.output
    admin_id, admin_secret = _key(created.output)

    imported = runner.invoke(
        app,
        [
            "import",
            "coco",
            str(ann),
            "--images",
            str(tmp_path / "coco" / "images"),
            "--project",
            "cli-proj",
            "--dataset",
            "train",
            "--data",
            str(data),
        ],
    )
    assert imported.exit_code == 0, imported.output
    assert "imported 12 files" in imported.output

    listed = runner.invoke(app, ["ls", "--data", str(data)])
    assert "cli-proj" in listed.output and "12" in listed.output

    with running_server(data) as url:
        made = runner.invoke(
            app,
            [
                "keys",
                "create",
                "--project",
                "cli-proj",
                "--role",
                "viewer",
                "--host",
                url,
                "--client-id",
                admin_id,
                "--client-secret",
                admin_secret,
            ],
        )
        assert made.exit_code == 0, made.output
        viewer_id, viewer_secret = _key(made.output)
        project = Project("cli-proj", viewer_id, viewer_secret, host=url)
        assert len(project.dataset("train")) == 12
        remote_ls = runner.invoke(
            app, ["ls", "cli-proj", "--host", url, "--client-id", viewer_id, "--client-secret", viewer_secret]
        )
        assert "train" in remote_ls.output
        denied = runner.invoke(
            app,
            [
                "keys",
                "create",
                "--project",
                "cli-proj",
                "--host",
                url,
                "--client-id",
                viewer_id,
                "--client-secret",
                viewer_secret,
            ],
        )
        assert denied.exit_code == 1 and "role 'viewer'" in denied.output


def test_cli_import_error_names_the_record(tmp_path: Path) -> None:
    data = tmp_path / "store"
    ann = make_coco(tmp_path / "coco", 4, seed=6)
    coco = json.loads(ann.read_text())
    coco["annotations"].append({"id": 999, "image_id": 1, "category_id": 42, "bbox": [1, 1, 2, 2]})
    ann.write_text(json.dumps(coco))
    runner.invoke(app, ["project", "create", "p", "--data", str(data)])
    result = runner.invoke(
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
    assert result.exit_code == 1
    assert "category_id 42" in result.output and "annotations[" in result.output
    truncated = tmp_path / "trunc.json"
    truncated.write_text(ann.read_text()[:100])
    result = runner.invoke(
        app,
        ["import", "coco", str(truncated), "--images", str(tmp_path), "--project", "p", "--data", str(data)],
    )
    assert result.exit_code == 1 and "not valid JSON" in result.output
