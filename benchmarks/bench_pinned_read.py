"""Pinned read versus head read on a big synthetic store (SQLite, service layer, no HTTP).

Builds (with bulk Core inserts, not the write path) a project of ``--files`` files with
``--per-file`` instances each (1M instances by default), then ``--edits`` commits that each
replace the instances of ``--edit-share`` of the files, so that the old revision has to
look past ended rows that the head does not see. Then times, at the head and pinned to the
revision before the edits: the id list of the dataset, the id list of a query, random
batched item reads (``items:batch``'s service call), and keyset-paged streaming.

    PYTHONPATH=src python benchmarks/bench_pinned_read.py [--files 100000] [--per-file 10]

Prints one line per measurement and the pinned/head ratio (target: within 1.2x).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update

from annostream.schema import ProjectCreate
from annostream.service.datasets import get_dataset, slice_ids
from annostream.service.items import page_items, read_items
from annostream.service.projects import LOCAL, authorize, create_project
from annostream.store import Store
from annostream.store.tables import dataset_files, datasets, file_label_counts, files, instances, labels
from annostream.store.versioning import begin_commit

CHUNK = 50_000
N_LABELS = 10


def _boxes(
    rng: random.Random, file_id: int, project_id: int, per_file: int, rev: int
) -> list[dict[str, Any]]:
    rows = []
    for k in range(per_file):
        x0, y0 = rng.uniform(0, 500), rng.uniform(0, 400)
        x1, y1 = x0 + rng.uniform(1, 100), y0 + rng.uniform(1, 60)
        rows.append(
            {
                "project_id": project_id,
                "file_id": file_id,
                "label_id": 1 + k % N_LABELS,
                "type": "box",
                "geometry": {"x_min": x0, "y_min": y0, "x_max": x1, "y_max": y1},
                "x_min": x0,
                "y_min": y0,
                "x_max": x1,
                "y_max": y1,
                "area": (x1 - x0) * (y1 - y0),
                "iscrowd": False,
                "attributes": {},
                "machine_made": False,
                "created_rev": rev,
            }
        )
    return rows


def build(
    root: Path, n_files: int, per_file: int, n_edits: int, edit_share: float, seed: int
) -> tuple[Store, int, int]:
    """The store, the revision before the edits, and the head."""
    rng = random.Random(seed)
    store = Store.open(root)
    create_project(store, LOCAL, ProjectCreate(string_id="big"))
    ref = authorize(store, LOCAL, "big", "viewer")
    with store.engine.begin() as conn:
        rev = begin_commit(conn, ref.id, "bulk build")
        conn.execute(
            insert(labels),
            [
                {"project_id": ref.id, "label_index": i, "name": f"l{i}", "spec": {}, "created_rev": rev}
                for i in range(1, N_LABELS + 1)
            ],
        )
        ds_id = conn.execute(
            insert(datasets).values(project_id=ref.id, name="Default", created_rev=rev)
        ).inserted_primary_key[0]
        for start in range(1, n_files + 1, CHUNK):
            ids = range(start, min(start + CHUNK, n_files + 1))
            conn.execute(
                insert(files),
                [
                    {
                        "id": i,
                        "project_id": ref.id,
                        "type": "image",
                        "original_filename": f"{i:08d}.jpg",
                        "width": 640,
                        "height": 480,
                        "metadata": {"split": "train" if i % 5 else "val"},
                        "created_rev": rev,
                    }
                    for i in ids
                ],
            )
            conn.execute(
                insert(dataset_files), [{"dataset_id": ds_id, "file_id": i, "created_rev": rev} for i in ids]
            )
            conn.execute(insert(instances), [r for i in ids for r in _boxes(rng, i, ref.id, per_file, rev)])
            counts: dict[tuple[int, int], int] = {}
            for i in ids:
                for k in range(per_file):
                    key = (i, 1 + k % N_LABELS)
                    counts[key] = counts.get(key, 0) + 1
            conn.execute(
                insert(file_label_counts),
                [
                    {"file_id": f, "label_id": lab, "count": n, "created_rev": rev}
                    for (f, lab), n in counts.items()
                ],
            )
    pinned = rev
    for _ in range(n_edits):
        edited = sorted(rng.sample(range(1, n_files + 1), int(n_files * edit_share)))
        with store.engine.begin() as conn:
            rev = begin_commit(conn, ref.id, "edit")
            for start in range(0, len(edited), 500):
                chunk = edited[start : start + 500]
                conn.execute(
                    update(instances)
                    .where(instances.c.file_id.in_(chunk), instances.c.deleted_rev.is_(None))
                    .values(deleted_rev=rev)
                )
                conn.execute(
                    insert(instances), [r for i in chunk for r in _boxes(rng, i, ref.id, per_file, rev)]
                )
    return store, pinned, rev


def timed(fn: Callable[[], Any], repeat: int) -> float:
    """Median wall time of ``fn`` over ``repeat`` runs, after one warm-up."""
    fn()
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--per-file", type=int, default=10)
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument("--edit-share", type=float, default=0.05)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--data", type=Path, default=None, help="Keep the store here.")
    args = parser.parse_args()

    root = args.data or Path(tempfile.mkdtemp(prefix="bench-pinned-"))
    t0 = time.perf_counter()
    store, pinned, head = build(root, args.files, args.per_file, args.edits, args.edit_share, seed=0)
    with store.engine.connect() as conn:
        n_rows = conn.execute(select(func.count()).select_from(instances)).scalar_one()
    print(
        f"built {args.files} files, {args.files * args.per_file} live instances, {n_rows} instance "
        f"rows ({args.edits} edit commits of {args.edit_share:.0%} of the files) "
        f"in {time.perf_counter() - t0:.1f} s; pinned rev {pinned}, head rev {head}"
    )

    ref = authorize(store, LOCAL, "big", "viewer")
    ds = get_dataset(store, ref, "Default")
    rng = random.Random(1)
    batches = [rng.sample(range(1, args.files + 1), 64) for _ in range(args.batches)]

    def items(as_of: int | None) -> None:
        for batch in batches:
            read_items(store, ref, batch, as_of)

    def stream(as_of: int | None, n: int = 20_000) -> None:
        after = None
        got = 0
        while got < n:
            page, _ = page_items(store, ds, as_of=as_of, after=after, limit=500)
            if not page:
                return
            got += len(page)
            after = page[-1]["id"]

    cases: list[tuple[str, Callable[[int | None], Any]]] = [
        ("ids (whole dataset)", lambda r: slice_ids(store, ds, None, r)),
        (
            'ids (labels.l3 >= 1 and file.metadata.split = "val")',
            lambda r: slice_ids(store, ds, 'labels.l3 >= 1 and file.metadata.split = "val"', r),
        ),
        (f"items:batch ({args.batches} x 64 random ids)", items),
        ("stream 20k items (keyset pages of 500)", stream),
    ]
    print(f"{'measurement':58} {'head':>9} {'pinned':>9} {'ratio':>6}")
    for name, fn in cases:
        t_head = timed(partial(fn, None), args.repeat)
        t_pinned = timed(partial(fn, pinned), args.repeat)
        print(f"{name:58} {t_head * 1000:8.1f}ms {t_pinned * 1000:8.1f}ms {t_pinned / t_head:6.2f}")
    store.close()
    if args.data is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
