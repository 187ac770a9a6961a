"""Crash safety of uploads, and ``annostream fsck``, on both stacks.

An upload killed with SIGKILL at a random point leaves the store as it was before that
upload: its rows absent (every committed upload whole), the store passing ``fsck``, and
whatever bytes it had written collectable by ``gc``. ``fsck`` itself must notice a blob
that is damaged or missing (exit code 1) and report orphans without calling them damage.
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from annostream.cli import app
from annostream.client.transports import EmbeddedTransport
from annostream.store import Store
from tests.resilience.conftest import build_store

pytestmark = pytest.mark.timeout(240)
runner = CliRunner()

_UPLOADER = """
import io, sys
import numpy as np
from PIL import Image
from annostream.client.transports import EmbeddedTransport
t = EmbeddedTransport(sys.argv[1])
rng = np.random.default_rng(int(sys.argv[2]))
box = {"type": "box", "label": "cat", "geometry": {"x_min": 1, "y_min": 1, "x_max": 20, "y_max": 20}}
t.list_projects()  # the store opened: from here on only uploads
print("ready", flush=True)
for n in range(1000):
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(out, "PNG")
    t.upload_file("resilience", "Default", f"crash-{sys.argv[2]}-{n}.png", out.getvalue(), [box] * 3, {})
    print(f"done crash-{sys.argv[2]}-{n}.png", flush=True)
"""


def fsck(store_dir: Path) -> tuple[int, dict]:
    result = runner.invoke(app, ["fsck", "--data", str(store_dir), "--json"])
    return result.exit_code, json.loads(result.stdout)


def _files(store_dir: Path) -> dict[str, int]:
    """File name -> number of instances, of every file in the dataset now."""
    t = EmbeddedTransport(store_dir)
    ids, rev = t.ids("resilience", "Default", None, None)
    return {
        item["file"]["name"]: len(item["instances"])
        for item, _ in t.items("resilience", [int(i) for i in ids], rev, False)
    }


def _blob_names(store_dir: Path) -> set[str]:
    store = Store.open(store_dir, create=False)
    try:
        return {sha for sha, _ in store.blobs.scan()}
    finally:
        store.close()


def test_uploads_killed_at_random_points_leave_the_store_whole(
    tmp_path: Path, new_store_dir: Callable[[Path], Path]
) -> None:
    store_dir, _ = build_store(tmp_path, new_store_dir, 4)
    before = _files(store_dir)
    rng = random.Random(14)
    done: set[str] = set()
    for seed in range(4):
        child = subprocess.Popen(
            [sys.executable, "-c", _UPLOADER, str(store_dir), str(seed)], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.2, 1.5))
        child.kill()
        out, _ = child.communicate()
        assert child.returncode == -9, "the uploader ran until it was killed"
        done |= {line.split()[1] for line in out.splitlines() if line.startswith("done ")}
        after = _files(store_dir)
        new = set(after) - set(before)
        assert done <= new, "an upload that returned is in the store"
        assert len(new - done) <= 1, "at most the upload killed after its commit, before it printed"
        assert all(after[name] == 3 for name in new), "every upload in the store is whole"
        code, report = fsck(store_dir)
        assert code == 0 and report["clean"], report
    assert len(done) >= 4, "uploads committed between the kills"
    # whatever the killed uploads wrote before their commit, gc collects it
    result = runner.invoke(app, ["gc", "--data", str(store_dir), "--older-than", "0s", "--keep-tags"])
    assert result.exit_code == 0, result.output
    code, report = fsck(store_dir)
    assert code == 0 and report["orphans"] == [] and report["temporaries"] == [], report


def _damage(store_dir: Path, sha: str, data: bytes | None) -> None:
    """Overwrite (or with None, delete) the blob named ``sha`` behind the store's back."""
    store = Store.open(store_dir, create=False)
    try:
        if data is None:
            store.blobs.delete(sha)
            return
        path = store.blobs.local_path(sha)
        if path is not None:
            path.write_bytes(data)
        else:
            store.blobs.client.put_object(Bucket=store.blobs.bucket, Key=store.blobs.key(sha), Body=data)
    finally:
        store.close()


def test_fsck_finds_damaged_and_missing_blobs_and_reports_orphans(
    tmp_path: Path, new_store_dir: Callable[[Path], Path]
) -> None:
    store_dir, _ = build_store(tmp_path, new_store_dir, 6)
    code, report = fsck(store_dir)
    assert code == 0 and report["clean"] and report["blobs_checked"] == 6, report

    store = Store.open(store_dir, create=False)
    orphan, _ = store.blobs.put(b"bytes no row names")
    store.close()
    code, report = fsck(store_dir)
    assert code == 0 and report["orphans"] == [orphan], "an orphan is reported, not damage"

    damaged, missing = sorted(_blob_names(store_dir) - {orphan})[:2]
    _damage(store_dir, damaged, b"not what was stored")
    _damage(store_dir, missing, None)
    result = runner.invoke(app, ["fsck", "--data", str(store_dir)])
    assert result.exit_code == 1
    assert "NOT CLEAN" in result.stdout and f"damaged: {damaged}" in result.stdout
    assert f"missing: {missing}" in result.stdout
    code, report = fsck(store_dir)
    assert code == 1 and report["damaged"] == [damaged] and report["missing"] == [missing]


def test_fsck_runs_the_sqlite_integrity_check(tmp_path: Path) -> None:
    store_dir, _ = build_store(tmp_path, lambda p: p, 2)
    db = store_dir / "annostream.db"
    code, report = fsck(store_dir)
    assert code == 0 and report["database"] == []
    with sqlite3.connect(db) as conn:  # everything into the main file, then damage its pages
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = bytearray(db.read_bytes())
    for at in range(2 * 4096 + 100, min(len(raw), 6 * 4096), 97):
        raw[at] ^= 0x5A
    db.write_bytes(bytes(raw))
    result = runner.invoke(app, ["fsck", "--data", str(store_dir)])
    assert result.exit_code == 1 and "NOT CLEAN" in result.stdout
    assert "database: integrity_check:" in result.stdout, result.stdout
