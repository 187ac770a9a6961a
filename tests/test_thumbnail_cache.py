"""The thumbnail cache across server processes: one decode per (blob, size), no lock files left."""

from __future__ import annotations

import io
import multiprocessing as mp
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

from PIL import Image

from annostream.server.web import thumbs
from annostream.store import Store


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.radial_gradient("L").convert("RGB").resize((900, 600)).save(out, format="JPEG")
    return out.getvalue()


def _race(store_dir: str, cache_dir: str, sha: str, size: int, start: Barrier, made: Queue[bool]) -> None:
    """One server process's thumbnail call, released at the same moment as the others."""
    store = Store.open(store_dir, create=False)
    try:
        start.wait()
        made.put(thumbs.thumbnail(store, Path(cache_dir), sha, size)[1])
    finally:
        store.close()


def test_processes_decode_each_size_once_and_leave_no_lock_files(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    sha, _ = store.blobs.put(_jpeg())
    store.close()
    cache = tmp_path / "thumbs"
    ctx = mp.get_context("fork")  # separate processes, each with its own in-process locks
    n = 6
    start, made = ctx.Barrier(n), ctx.Queue()
    sizes = [128, 512] * (n // 2)
    procs = [
        ctx.Process(target=_race, args=(str(tmp_path / "store"), str(cache), sha, size, start, made))
        for size in sizes
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * n
    results = [made.get(timeout=5) for _ in range(n)]
    assert sorted(results) == [False] * (n - 2) + [True] * 2, "each size decoded by one process"
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == [f"{sha}-128.jpg", f"{sha}-512.jpg"]
    with Image.open(cache / sha[:2] / f"{sha}-512.jpg") as im:
        assert max(im.size) == 512
