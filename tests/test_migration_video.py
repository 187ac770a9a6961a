"""Migration 0002 (video and text columns) upgrades a 0001 database in place and back, on both engines."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, text

from annostream.store.db import alembic_config, create_db_engine


def _url(stack: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if stack == "pg":
        return request.getfixturevalue("services").create_database()
    return f"sqlite:///{tmp_path / 'm.db'}"


def _run(url: str, verb: str, target: str) -> None:
    engine = create_db_engine(url)
    cfg = alembic_config(url)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        getattr(command, verb)(cfg, target)
    engine.dispose()


def test_0002_keeps_rows_and_adds_the_video_columns(
    stack: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = _url(stack, tmp_path, request)
    _run(url, "upgrade", "0001")
    engine = create_db_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO projects (string_id, name, is_public, head_rev) VALUES ('p', 'p', false, 1)")
        )
        conn.execute(
            text(
                "INSERT INTO files (project_id, type, original_filename, metadata, created_rev) "
                "VALUES (1, 'image', 'a.png', '{}', 1)"
            )
        )
    _run(url, "upgrade", "head")
    columns = {c["name"] for c in inspect(engine).get_columns("files")}
    assert {"duration", "codec", "keyframes"} <= columns
    assert {"keyframe", "range_start", "range_end"} <= {
        c["name"] for c in inspect(engine).get_columns("instances")
    }
    with engine.begin() as conn:
        assert conn.execute(text("SELECT original_filename, duration FROM files")).all() == [("a.png", None)]
    _run(url, "downgrade", "0001")
    engine.dispose()
    inspector = inspect(create_db_engine(url))
    assert "keyframes" not in {c["name"] for c in inspector.get_columns("files")}
    with create_db_engine(url).begin() as conn:
        assert conn.execute(text("SELECT original_filename FROM files")).scalars().all() == ["a.png"]
