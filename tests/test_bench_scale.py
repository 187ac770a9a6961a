"""The scale bench keeps its stores: ``--reuse`` measures a store built earlier with the same
files / per-file / seed instead of building it again, migrates one of an older schema when it
opens it, and starts a kept PostgreSQL again from its data folder (figures are not asserted)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from annostream.store.db import alembic_config
from benchmarks import bench_scale
from tests import services as svc


def _need_postgres() -> None:
    """Skip without PostgreSQL's server binaries, except in CI (``ANNOSTREAM_REQUIRE_PG=1``,
    whose run installs them), where their absence is a failure."""
    if svc.pg_bin("initdb"):
        return
    if os.environ.get("ANNOSTREAM_REQUIRE_PG") == "1":
        pytest.fail("PostgreSQL server binaries not found, and ANNOSTREAM_REQUIRE_PG=1")
    pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")


@pytest.fixture(params=["sqlite", "pg"])
def scale_stack(request: pytest.FixtureRequest) -> str:
    if request.param == "pg":
        _need_postgres()
    return str(request.param)


@pytest.fixture
def work() -> Iterator[Path]:
    """A work folder the postgres user can reach (pytest's own temp folders are private)."""
    root = Path(tempfile.mkdtemp(prefix="annostream-scale-test-"))
    root.chmod(0o755)
    yield root / "work"
    for pg in root.glob("work/*/services/pg"):
        svc.stop_postgres(pg)
    shutil.rmtree(root, ignore_errors=True)


def _run(work: Path, stack: str, *extra: str) -> dict:
    args = bench_scale.parse(
        [
            *("--files", "120", "--small", "40", "--stack", stack, "--work", str(work)),
            *("--build-only", "--out", str(work / "out.json"), *extra),
        ]
    )
    bench_scale.run(args)
    return json.loads((work / "out.json").read_text())["results"][0]


@contextlib.contextmanager
def _kept_server(work: Path, stack: str) -> Iterator[None]:
    """The bench stops its PostgreSQL when it ends: start the kept one while a test reads it."""
    if stack != "pg":
        yield
        return
    pg = work / "pg" / "services" / "pg"
    bench_scale.restart_kept_postgres(pg, work / "pg")
    try:
        yield
    finally:
        svc.stop_postgres(pg)


def _files(store: Path) -> int:
    engine = sa.create_engine(bench_scale._database_url(store))
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM files")).scalar_one())
    finally:
        engine.dispose()


def test_a_kept_store_is_reused_not_rebuilt(work: Path, scale_stack: str) -> None:
    first = _run(work, scale_stack)
    large = work / scale_stack / "large"
    record = json.loads((large.with_name("large.build.json")).read_text())
    assert (record["files"], record["per_file"], record["seed"]) == (120, 10, 0)
    assert record["instances"] == first["instances"] == 1200
    assert "opened" not in first

    again = _run(work, scale_stack, "--reuse")
    assert again["opened"]["from"] == again["opened"]["to"] == record["schema"]
    assert again["build"] == first["build"]  # read from the build file, not measured again
    assert json.loads(large.with_name("large.build.json").read_text())["date"] == record["date"]
    with _kept_server(work, scale_stack):
        assert _files(large) == 120


def test_another_seed_or_size_builds_again(work: Path) -> None:
    _run(work, "sqlite")
    date = json.loads((work / "sqlite" / "large.build.json").read_text())["date"]
    rebuilt = _run(work, "sqlite", "--reuse", "--seed", "7")
    assert "opened" not in rebuilt
    record = json.loads((work / "sqlite" / "large.build.json").read_text())
    assert record["seed"] == 7
    assert record["date"] >= date
    assert _files(work / "sqlite" / "large") == 120


def test_an_unfinished_build_is_not_reused(work: Path) -> None:
    _run(work, "sqlite")
    (work / "sqlite" / "large.build.json").unlink()  # as if the build had been interrupted
    result = _run(work, "sqlite", "--reuse")
    assert "opened" not in result
    assert (work / "sqlite" / "large.build.json").is_file()


def test_an_older_schema_is_migrated_when_reused(work: Path, scale_stack: str) -> None:
    _run(work, scale_stack)
    large = work / scale_stack / "large"
    with _kept_server(work, scale_stack):
        head = bench_scale.schema_version(large)
        url = bench_scale._database_url(large)
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                cfg = alembic_config(url)
                cfg.attributes["connection"] = conn
                command.downgrade(cfg, "-1")
        finally:
            engine.dispose()
        older = bench_scale.schema_version(large)
    assert older != head

    result = _run(work, scale_stack, "--reuse")
    assert (result["opened"]["from"], result["opened"]["to"]) == (older, head)
    assert result["opened"]["seconds"] > 0


def test_a_kept_postgres_whose_port_is_taken_moves_to_a_free_one(work: Path) -> None:
    _need_postgres()
    _run(work, "pg")
    old_url = json.loads((work / "pg" / "large" / "store.json").read_text())["db"]
    port = int(old_url.rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = _run(work, "pg", "--reuse")
    new_url = json.loads((work / "pg" / "large" / "store.json").read_text())["db"]
    assert new_url != old_url
    assert new_url.rsplit("/", 1)[1] == old_url.rsplit("/", 1)[1]  # the same database
    assert "opened" in result
    assert f"-p {port} " not in (work / "pg" / "services" / "pg" / "options").read_text()


def test_parts_measures_only_what_is_asked_on_a_kept_store(work: Path) -> None:
    _run(work, "sqlite")
    args = bench_scale.parse(
        [
            *("--files", "120", "--small", "40", "--stack", "sqlite", "--work", str(work), "--reuse"),
            *("--parts", "first_batch", "random", "--random", "5", "--out", str(work / "parts.json")),
        ]
    )
    rows = bench_scale.run(args)
    result = json.loads((work / "parts.json").read_text())["results"][0]
    assert {"first_batch", "random", "opened"} <= set(result)
    assert not {"queries", "in_process", "export_then_load", "rss"} & set(result)
    assert result["random"]["n"] == 5
    assert any(r["figure"].startswith("9. time to first batch (") for r in rows)
