"""A newcomer's first hour through the real CLI: the demo keeps the user's files and ends with
a block that works as printed, ``serve`` says where it is, nothing is created by opening it,
errors are one line, user text is never markup, flags beat the environment."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from annostream import Project
from annostream.cli import app
from annostream.client.transports import EmbeddedTransport
from annostream.server.launch import free_port
from tests.conftest import Source
from tests.revhelpers import png

runner = CliRunner()
CLI = [sys.executable, "-m", "annostream.cli"]
ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANNOSTREAM_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    return {**env, **extra}


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, env=env or _env())


@contextmanager
def _serving(argv: list[str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run a serve command line as given; yield the process and its first stdout lines."""
    port = argv[argv.index("--port") + 1]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not answer"
            time.sleep(0.1)
        banner = []
        assert proc.stdout is not None
        for line in proc.stdout:
            banner.append(line)
            if "annostream keys create" in line:
                break
        yield proc, "".join(banner)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_demo_keeps_a_folder_with_a_users_file(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    result = _cli("demo", "--data", str(mine), "--items", "3")
    assert result.returncode == 1
    assert (mine / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "left untouched" in lines[0] and "Traceback" not in result.stderr


def test_demo_then_its_printed_block_works_as_printed(tmp_path: Path) -> None:
    data, port = tmp_path / "demo-data", free_port()
    for _ in range(2):  # a second run rebuilds the folder the first one made
        result = runner.invoke(app, ["demo", "--data", str(data), "--items", "10", "--port", str(port)])
        assert result.exit_code == 0, result.output
    assert (data / "annostream.db").is_file() and (data / ".annostream-demo").is_file()
    out = result.output
    serve_line = next(line.strip() for line in out.splitlines() if " serve --data " in line)
    # Run in-process here, the demo names this interpreter's module, as it would be typed
    # (by its path relative to this folder when it lies below it, as after `make demo`).
    from annostream.demo import commands

    assert commands()[0].endswith("-m annostream.cli")
    assert serve_line == f"{commands()[0]} serve --data {data} --port {port}"
    assert re.search(r"client_id=\S+", out) and re.search(r"client_secret=\S+", out)
    snippet = out.split("# --- demo_read.py ---\n", 1)[1].split("# --- end ---", 1)[0]
    assert 'Project("coco-dataset"' in snippet

    with _serving(shlex.split(serve_line)):
        script = tmp_path / "demo_read.py"
        script.write_text(snippet)
        run_line = re.search(r"and run: (.+) demo_read\.py\)", out)
        assert run_line, out
        ran = subprocess.run(
            [*shlex.split(run_line.group(1)), str(script)],
            capture_output=True,
            text=True,
            timeout=120,
            env=_env(),
            cwd=Path.cwd(),  # the shell the demo printed for (its commands may be relative to it)
        )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("10 items; the first:"), ran.stdout
    assert "items with a cat" in ran.stdout


def test_serve_banner_index_errors_and_offline_docs(source: Source) -> None:
    port = free_port()
    with _serving([*CLI, "serve", "--data", str(source.store_dir), "--port", str(port)]) as (_, banner):
        url = f"http://127.0.0.1:{port}"
        assert f"at {url}" in banner and f"{url}/docs" in banner
        assert "coco-dataset: 1 datasets, 40 files, private" in banner
        assert 'Project("coco-dataset", CLIENT_ID, CLIENT_SECRET' in banner
        index = httpx.get(f"{url}/").json()
        assert index["links"]["docs"] == f"{url}/docs"
        assert httpx.get(index["links"]["openapi"]).status_code == 200
        missing = httpx.get(f"{url}/no/such/route")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found" and set(missing.json()["error"]) == {
            "code",
            "message",
            "detail",
        }
        wrong = httpx.delete(f"{url}/healthz")
        assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
        docs = httpx.get(f"{url}/docs").text
        scripts = re.findall(r'(?:src|href)="([^"]+)"', docs)
        assert scripts and all(s.startswith("/") for s in scripts), scripts
        for asset in scripts:
            assert httpx.get(f"{url}{asset}").status_code == 200


def test_serve_and_ls_refuse_a_folder_without_a_store(tmp_path: Path) -> None:
    parent = tmp_path / "demo-data"
    EmbeddedTransport(parent / "store", create=True).create_project("p", None, False)
    for args in (["ls", "--data", str(parent)], ["serve", "--data", str(parent), "--port", str(free_port())]):
        result = _cli(*args)
        assert result.returncode == 1, result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"nearest store below it is {parent / 'store'}" in lines[0]
    assert not (parent / "annostream.db").exists()
    typo = tmp_path / "typo"
    result = _cli("serve", "--data", str(typo), "--port", str(free_port()))
    assert result.returncode == 1 and "annostream init" in result.stderr and not typo.exists()
    made = _cli("init", "--data", str(typo))
    assert made.returncode == 0 and (typo / "annostream.db").is_file()
    assert _cli("ls", "--data", str(typo)).returncode == 0


def test_user_text_prints_intact_and_errors_are_one_line(tmp_path: Path) -> None:
    data = tmp_path / "store"
    assert runner.invoke(app, ["project", "create", "marks", "--data", str(data)]).exit_code == 0
    Project("marks", host=f"file://{data}").upload("Default", data=png(), filename="[draft] img1.jpg")
    shown = runner.invoke(app, ["query", "marks", "Default", "file.id > 0", "--data", str(data)])
    assert shown.exit_code == 0 and "[draft] img1.jpg" in shown.output, shown.output
    bad = _cli("query", "marks", "Default", 'file.name = "[b]x[/b]" and', "--data", str(data))
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "Traceback" not in bad.stderr
    counted = runner.invoke(app, ["query", "marks", "Default", "file.id > 0", "--count", "--data", str(data)])
    assert counted.exit_code == 0 and "1 files match" in counted.output
    helped = runner.invoke(app, ["query", "--help"])
    assert not re.search(r"--count\s+<bool>", helped.output)
    typo = _cli("ls", "marks", "--data", str(data / "nope"))
    assert typo.returncode == 1 and len(typo.stderr.strip().splitlines()) == 1


def test_explicit_flags_beat_the_environment_and_hidden_projects_are_hinted(
    source: Source, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    EmbeddedTransport(other, create=True).create_project("elsewhere", None, False)
    env = _env(ANNOSTREAM_DATA=str(other))
    remote = _cli(
        "ls",
        "--host",
        source.url,
        "--client-id",
        source.viewer["client_id"],
        "--client-secret",
        source.viewer["client_secret"],
        env=env,
    )
    assert remote.returncode == 0 and "coco-dataset" in remote.stdout and "elsewhere" not in remote.stdout
    assert "private ones may be hidden" not in remote.stderr
    local = _cli("ls", env=env)
    assert "elsewhere" in local.stdout
    anonymous = _cli("ls", "--host", source.url, env=env)
    assert anonymous.returncode == 0 and "coco-dataset" not in anonymous.stdout
    assert "private ones may be hidden" in anonymous.stderr


def test_a_failed_cli_export_leaves_no_folder(source: Source, tmp_path: Path) -> None:
    out = tmp_path / "export"
    result = _cli(
        "export",
        "coco-dataset",
        "Default",
        "--out",
        str(out),
        "--format",
        "nope",
        "--data",
        str(source.store_dir),
    )
    assert result.returncode == 1 and "unsupported export format" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("flag", ["--data", "--host"])
def test_keys_create_example_of_the_docs_runs(source: Source, tmp_path: Path, flag: str) -> None:
    where = str(source.store_dir) if flag == "--data" else source.url
    auth = (
        []
        if flag == "--data"
        else ["--client-id", source.admin["client_id"], "--client-secret", source.admin["client_secret"]]
    )
    made = runner.invoke(
        app, ["keys", "create", "--project", "coco-dataset", "--role", "viewer", flag, where, *auth]
    )
    assert made.exit_code == 0 and "client_secret=" in made.output, made.output
