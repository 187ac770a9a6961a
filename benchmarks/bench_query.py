"""Benchmark: a count predicate over 100k files / 1M instances on SQLite.

    python benchmarks/bench_query.py [--files 100000] [--instances-per-file 10] [--repeat 5]

Builds a temporary store with Core bulk inserts (files, dataset membership, instances and
their derived per-file label counts and attribute index), then times, for ``labels.cat > 2`` and a few other
queries, the time to the first id of the slice (compile + first row) and to its count.
Target: under 200 ms each for the count predicate. Not a test.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

from sqlalchemy import func, insert, select

from annostream.service.attribute_index import history_rows
from annostream.service.dataset_counts import rebuild_counts
from annostream.service.datasets import DatasetRef, slice_count, slice_ids, slice_select
from annostream.service.projects import ProjectRef
from annostream.store import Store
from annostream.store.tables import (
    attribute_groups,
    attribute_options,
    dataset_files,
    datasets,
    file_attribute_values,
    file_label_counts,
    files,
    instances,
    labels,
    projects,
)
from benchmarks import synthetic
from benchmarks.synthetic import LABELS

QUERIES = [
    "labels.cat > 2",
    "labels.cat = 0",
    "labels.cat > 2 and labels.dog = 0",
    "labels.traffic_light >= 1 or labels.bus >= 3",
    "instances.count >= 14",
    "attributes.weather = rain",
    "file.width >= 1024",
    "file.metadata.split = val",
]
BATCH = 50_000


def _insert_files(conn: Any, ds_id: int, rows: list[dict[str, Any]]) -> None:
    """Files and their dataset membership (before the instances that point at them)."""
    if rows:
        conn.execute(insert(files), rows)
        conn.execute(
            insert(dataset_files), [{"dataset_id": ds_id, "file_id": r["id"], "created_rev": 1} for r in rows]
        )


def _insert_instances(conn: Any, batch: list[dict[str, Any]]) -> None:
    """Instances of whole files, with their rows of the attribute index."""
    conn.execute(insert(instances), batch)
    indexed = list(history_rows(batch))
    if indexed:
        conn.execute(insert(file_attribute_values), indexed)


def build(store: Store, n_files: int, per_file: int, seed: int = 0) -> DatasetRef:
    with store.engine.begin() as conn:
        pid = conn.execute(
            insert(projects).values(string_id="bench", name="bench", is_public=False, head_rev=1)
        ).inserted_primary_key[0]
        label_ids = []
        for index, name in enumerate(LABELS, start=1):
            label_ids.append(
                conn.execute(
                    insert(labels).values(
                        project_id=pid,
                        label_index=index,
                        name=name,
                        spec={},
                        created_rev=1,
                    )
                ).inserted_primary_key[0]
            )
        gid = conn.execute(
            insert(attribute_groups).values(project_id=pid, name="weather", kind="select", created_rev=1)
        ).inserted_primary_key[0]
        for option in synthetic.WEATHER:
            conn.execute(insert(attribute_options).values(group_id=gid, name=option, created_rev=1))
        ds_id = conn.execute(
            insert(datasets).values(project_id=pid, name="all", created_rev=1)
        ).inserted_primary_key[0]

        label_id = dict(zip(LABELS, label_ids, strict=True))
        batch: list[dict[str, Any]] = []
        file_rows: list[dict[str, Any]] = []
        count_rows: list[dict[str, Any]] = []
        for f in synthetic.files(n_files, per_file, seed):
            file_rows.append(
                {
                    "id": f.index,
                    "project_id": pid,
                    "type": "image",
                    "original_filename": f.name,
                    "width": f.width,
                    "height": f.height,
                    "metadata": {"split": f.split},
                    "created_rev": 1,
                }
            )
            for box in f.boxes:
                batch.append(
                    {
                        "project_id": pid,
                        "file_id": f.index,
                        "label_id": label_id[box.label],
                        "type": "box",
                        "geometry": {},
                        "attributes": {"weather": box.weather} if box.weather else {},
                        "created_rev": 1,
                        "deleted_rev": None,
                    }
                )
            for name, count in Counter(b.label for b in f.boxes).items():
                count_rows.append(
                    {
                        "file_id": f.index,
                        "label_id": label_id[name],
                        "count": count,
                        "created_rev": 1,
                        "deleted_rev": None,
                    }
                )
            if len(batch) >= BATCH:  # whole files only: their attribute index rows go with them
                _insert_files(conn, ds_id, file_rows)
                _insert_instances(conn, batch)
                batch, file_rows = [], []
        _insert_files(conn, ds_id, file_rows)
        if batch:
            _insert_instances(conn, batch)
        for start in range(0, len(count_rows), BATCH):
            conn.execute(insert(file_label_counts), count_rows[start : start + BATCH])
        rebuild_counts(conn)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    project = ProjectRef(pid, "bench", "bench", False, "admin")
    return DatasetRef(ds_id, "all", project)


def first_id(store: Store, ds: DatasetRef, query: str) -> int | None:
    with store.engine.connect() as conn:
        row = conn.execute(slice_select(conn, ds, query, 1)).first()
    return row[0] if row else None


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall time in ms over ``repeat`` runs (after one warm-up), and the last result."""
    result = fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--instances-per-file", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="annostream-bench-") as tmp:
        store = Store.open(tmp)
        t0 = time.perf_counter()
        ds = build(store, args.files, args.instances_per_file)
        with store.engine.connect() as conn:
            n_inst = conn.execute(select(func.count()).select_from(instances)).scalar_one()
            n_files = conn.execute(select(func.count()).select_from(files)).scalar_one()
        print(f"built {n_files:,} files, {n_inst:,} instances in {time.perf_counter() - t0:.1f} s")
        print(f"{'query':48} {'first id':>10} {'count':>10} {'all ids':>10} {'matches':>9}")
        for query in QUERIES:
            t_first, _ = timed(partial(first_id, store, ds, query), args.repeat)
            t_count, (count, _) = timed(partial(slice_count, store, ds, query), args.repeat)
            t_ids, (ids, _) = timed(partial(slice_ids, store, ds, query), max(1, args.repeat // 2))
            assert len(ids) == count
            print(f"{query:48} {t_first:8.1f}ms {t_count:8.1f}ms {t_ids:8.1f}ms {count:9,}")
        store.close()


if __name__ == "__main__":
    main()
