"""An import killed with SIGKILL at any point leaves the store as it was.

A real ``annostream import coco`` process imports 600 small files and is killed at
random points; each time the project's ids, row counts and revision equal those before,
and what it staged is collected by gc (after each kill, so that the next run's staging is
seen as its own). A run that is not killed imports everything once.

The kill points are anchored on the import's own progress, not on the clock alone: one
falls before it stages anything, the others after its first staged row is seen (one at
once, the rest at random within the time staging took in an unkilled run), so a loaded
machine, where starting Python takes most of a run, still kills imports mid-staging.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import func, select

from annostream import Project
from annostream.client.transports import EmbeddedTransport
from annostream.service.revisions import collect_garbage
from annostream.store import Store
from annostream.store.tables import (
    blobs,
    dataset_files,
    files,
    instances,
    labels,
    projects,
    staged_blobs,
)
from tests.conftest import blob_names

N_FILES = 600  # more than the staging batches (64 files) and the derived-table refresh (500)
KILLS = 4


def _tiny_coco(root: Path, n: int) -> Path:
    (root / "images").mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        name = f"{i:05d}.png"
        Image.new("RGB", (6, 5), (i % 256, i // 256, 7)).save(root / "images" / name)
        images.append({"id": i, "file_name": name, "width": 6, "height": 5})
        anns.append(
            {
                "id": i,
                "image_id": i,
                "category_id": 1 + i % 2,
                "bbox": [0, 0, 3, 2],
                "segmentation": [[0, 0, 3, 0, 3, 2]],
                "area": 3.0,
                "iscrowd": 0,
            }
        )
    path = root / "annotations.json"
    path.write_text(
        json.dumps(
            {
                "images": images,
                "annotations": anns,
                "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
            }
        )
    )
    return path


def _state(store_dir: Path) -> dict[str, Any]:
    store = Store.open(store_dir)
    try:
        with store.engine.connect() as conn:
            count = {
                t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (files, instances, dataset_files, labels)
            }
            head = conn.execute(
                select(projects.c.head_rev).where(projects.c.string_id == "crash")
            ).scalar_one()
    finally:
        store.close()
    ds = Project("crash", host=f"file://{store_dir}").dataset("Default")
    return {"counts": count, "revision": head, "ids": ds.ids.tolist()}


def _staging_seen(store_dir: Path, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> bool:
    """Wait until the import ``proc`` has committed a staged blob's row in ``store_dir`` (True),
    or has exited (False)."""
    store = Store.open(store_dir)
    deadline = time.monotonic() + timeout
    try:
        with store.engine.connect() as conn:
            while proc.poll() is None and time.monotonic() < deadline:
                if conn.execute(select(func.count()).select_from(staged_blobs)).scalar_one():
                    return True
                conn.rollback()  # a fresh snapshot for the next look
                time.sleep(0.01)
    finally:
        store.close()
    return False


def _collect(store_dir: Path) -> int:
    """gc of ``store_dir`` with no grace for staged blobs; how many staged rows it collected."""
    store = Store.open(store_dir)
    try:
        return collect_garbage(store, timedelta(days=1), staged_grace=timedelta(0)).staged
    finally:
        store.close()


def _import(store_dir: Path, ann: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "ANNOSTREAM_DATA"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "annostream.cli",
            "import",
            "coco",
            str(ann),
            "--images",
            str(ann.parent / "images"),
            "--project",
            "crash",
            "--data",
            str(store_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def test_sigkill_during_an_import_leaves_the_store_as_it_was(
    tmp_path: Path, new_store_dir: Callable[[Path], Path]
) -> None:
    ann = _tiny_coco(tmp_path / "coco", N_FILES)
    # A run that is not killed, in a store of its own: what an import does, and how long it takes.
    timing_dir = new_store_dir(tmp_path / "timing")
    EmbeddedTransport(timing_dir).create_project("crash", None, False)
    started = time.monotonic()
    full = _import(timing_dir, ann)
    assert _staging_seen(timing_dir, full), "the import staged nothing"
    staging_at = time.monotonic() - started
    out, err = full.communicate(timeout=600)
    staging = time.monotonic() - started - staging_at
    assert full.returncode == 0, err.decode()
    assert f"imported {N_FILES} files" in out.decode()
    assert len(_state(timing_dir)["ids"]) == N_FILES

    store_dir = new_store_dir(tmp_path / "store")
    local = EmbeddedTransport(store_dir)
    local.create_project("crash", None, False)
    local.upload_file(
        "crash",
        "Default",
        "before.png",
        (tmp_path / "coco" / "images" / "00000.png").read_bytes(),
        [],
        {"kept": True},
    )
    before = _state(store_dir)
    killed, staged = 0, 0
    rng = random.Random(7)
    # (after staging began?, seconds): one kill before it, one as it begins, the rest within it
    points = [(False, rng.uniform(0.0, staging_at * 0.9)), (True, 0.0)]
    points += [(True, rng.uniform(0.0, staging * 0.95)) for _ in range(KILLS - 2)]
    for after_staging, delay in points:
        proc = _import(store_dir, ann)
        if after_staging and not _staging_seen(store_dir, proc):
            proc.wait(timeout=60)  # it ended before staging was seen: checked below like any run
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        state = _state(store_dir)
        if proc.returncode == 0 or state != before:
            # It committed before the kill (it finished, or was killed while exiting after its
            # commit): then all of it is there, never a part.
            assert len(state["ids"]) == N_FILES + 1 and state["revision"] == before["revision"] + 1, (
                f"killed {delay:.2f}s {'into staging' if after_staging else 'after its start'}"
            )
            before = state
            continue
        killed += 1
        # gc collects what the killed import staged (and the next run's staging is its own).
        staged += _collect(store_dir)

    _collect(store_dir)
    store = Store.open(store_dir)
    try:
        with store.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(staged_blobs)).scalar_one() == 0
            rows = set(conn.execute(select(blobs.c.sha256)).scalars())
            used = set(conn.execute(select(files.c.blob_sha256)).scalars())
    finally:
        store.close()
    assert killed >= 1
    assert staged > 0, "the killed imports had staged blobs"
    assert rows == used, "every blob row left is one a file uses"
    # Half-written temporaries (a kill inside a write) are not blobs: no name, no row.
    held = {name for name in blob_names(store_dir) if not name.startswith(".tmp-")}
    assert rows <= held, "every blob row has its bytes"
    # Bytes a kill left between writing them and committing their rows are orphans: blobs
    # of this import's images that no row names.
    images = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "coco" / "images").iterdir()}
    assert held - rows <= images
    assert _state(store_dir) == before
