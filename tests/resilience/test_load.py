"""The load test's short form: 32 streaming clients and 2 writers for 10 s against one
server. No figure is asserted (they live in benchmarks/ and the README); correctness is:
no errors, no item lost or delivered twice, every acknowledged upload present once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from annostream.server.launch import running_server
from benchmarks.load import run_load
from tests.resilience.conftest import build_store

pytestmark = pytest.mark.timeout(180)


def test_short_load_loses_and_duplicates_nothing(
    tmp_path: Path, new_store_dir: Callable[[Path], Path]
) -> None:
    store_dir, key = build_store(tmp_path, new_store_dir, 60)
    with running_server(store_dir) as url:
        report = asyncio.run(run_load(url, "resilience", key, key, seconds=10, readers=32, writers=2))
    summary = report.summary()
    assert report.errors == 0, summary["error_samples"]
    assert report.lost == 0 and report.duplicated == 0, summary
    assert report.epochs >= 32 and report.uploads >= 2 and report.items > 0, summary
