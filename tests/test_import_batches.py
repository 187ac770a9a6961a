"""Imports written in batches: the derived tables (per-(file, label) counts, the attribute
index) come out exactly as a refresh from the instances would make them, a bad record after
some batches were written still leaves nothing, and records naming one blob are each
checked. Both stacks; batches made small so one import spans many of them."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from annostream import InvalidInput
from annostream.formats import ImportSource
from annostream.service import imports
from annostream.service.datasets import DatasetRef, slice_ids
from annostream.service.ingest import refresh_derived
from annostream.service.projects import LOCAL, ProjectRef, authorize
from annostream.service.staging import stage_blobs
from annostream.store import Store
from annostream.store.tables import datasets, file_attribute_values, file_label_counts, files
from annostream.store.versioning import begin_commit
from tests.revhelpers import new_project, png

LABELS = ["cat", "dog", "bird"]
GROUPS = [
    {"name": "weather", "kind": "select", "options": ["rain", "sun"]},
    {"name": "tags", "kind": "multi_select", "options": ["a", "b", "c"]},
    {"name": "score", "kind": "number"},
]


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imports._Batch, "FILES", 4)
    monkeypatch.setattr(imports._Batch, "INSTANCES", 9)


def _project(server_store: tuple[str, Path]) -> tuple[Store, ProjectRef, str]:
    url, store_dir = server_store
    p = new_project("embedded", url, store_dir, prefix="batch", vocabulary=False)
    store = Store.open(store_dir)
    ref = authorize(store, LOCAL, p.string_id, "editor")
    sha = stage_blobs(store, ref, [(png(), "body")])[0].sha256
    return store, ref, sha


def _instances(rng: random.Random) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for _ in range(rng.randint(0, 5)):
        x, y = rng.uniform(0, 10), rng.uniform(0, 10)
        attrs: dict[str, Any] = {}
        if rng.random() < 0.4:
            attrs["tags"] = rng.sample(["a", "b", "c"], rng.randint(0, 2))
        if rng.random() < 0.3:
            attrs["score"] = rng.choice([0.5, 2, 7.25])
        if rng.random() < 0.5:
            kind, geometry = "box", {"x_min": x, "y_min": y, "x_max": x + 3, "y_max": y + 4}
        else:
            kind, geometry = "polygon", {"points": [[x, y], [x + 2, y], [x + 1, y + 3]]}
        out.append({"type": kind, "label": rng.choice(LABELS), "geometry": geometry, "attributes": attrs})
    if rng.random() < 0.7:
        out.append({"type": "global", "attributes": {"weather": rng.choice(["rain", "sun"])}})
    return out


def _records(sha: str, n: int, seed: int = 3) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {"where": f"r{i}", "name": f"{i}.png", "sha256": sha, "instances": _instances(rng)} for i in range(n)
    ]


def _live(store: Store) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
    flc, fav = file_label_counts, file_attribute_values
    with store.engine.connect() as conn:
        counts = set(
            conn.execute(
                select(flc.c.file_id, flc.c.label_id, flc.c["count"]).where(flc.c.deleted_rev.is_(None))
            )
        )
        index = set(
            conn.execute(
                select(fav.c.file_id, fav.c.key, fav.c.kind, fav.c.text, fav.c.number).where(
                    fav.c.deleted_rev.is_(None)
                )
            )
        )
    return {tuple(r) for r in counts}, {tuple(r) for r in index}


def test_batched_import_derives_what_a_refresh_would(
    server_store: tuple[str, Path], small_batches: None
) -> None:
    store, ref, sha = _project(server_store)
    records = _records(sha, 23)
    result = imports.commit_records(
        store, ref, "Default", ImportSource([{"name": n} for n in LABELS], GROUPS, iter(records), 23)
    )
    assert result["files"] == 23
    assert result["instances"] == sum(len(r["instances"]) for r in records)
    counts, index = _live(store)

    with store.engine.connect() as conn:
        ids = [
            i
            for (i,) in conn.execute(
                select(files.c.id).where(files.c.project_id == ref.id).order_by(files.c.id)
            )
        ]
    assert len(ids) == 23
    # The counts follow the records, in the order the files were written.
    expected_names = [
        Counter(i["label"] for i in rec["instances"] if i["type"] != "global") for rec in records
    ]
    by_file: dict[int, Counter[int]] = {}
    for file_id, label_id, n in counts:
        by_file.setdefault(file_id, Counter())[label_id] = n
    assert [sorted(by_file.get(i, Counter()).values()) for i in ids] == [
        sorted(c.values()) for c in expected_names
    ]
    # A refresh from the instances, in a later commit, finds nothing to change (revisions are
    # per project: only this project's files are looked at).
    with store.engine.connect() as conn, conn.begin() as tx:
        rev = begin_commit(conn, ref.id, "refresh")
        refresh_derived(conn, ids, rev)
        changed = [
            conn.execute(
                select(func.count())
                .select_from(t)
                .where(t.c.file_id.in_(ids), (t.c.created_rev == rev) | (t.c.deleted_rev == rev))
            ).scalar_one()
            for t in (file_label_counts, file_attribute_values)
        ]
        tx.rollback()
    assert changed == [0, 0]
    assert _live(store) == (counts, index)
    # Queries over the derived tables answer as the records say.
    with store.engine.connect() as conn:
        ds_id = conn.execute(select(datasets.c.id).where(datasets.c.project_id == ref.id)).scalar_one()
    ds = DatasetRef(ds_id, "Default", ref)
    rain = [
        ids[n]
        for n, rec in enumerate(records)
        if {"type": "global", "attributes": {"weather": "rain"}} in rec["instances"]
    ]
    assert slice_ids(store, ds, "attributes.weather = rain")[0].tolist() == rain
    two_cats = [ids[n] for n, c in enumerate(expected_names) if c["cat"] >= 2]
    assert slice_ids(store, ds, "labels.cat >= 2")[0].tolist() == two_cats
    store.close()


def test_a_bad_record_after_written_batches_leaves_nothing(
    server_store: tuple[str, Path], small_batches: None
) -> None:
    store, ref, sha = _project(server_store)
    records = _records(sha, 15)
    records[12]["instances"] = [
        {"type": "box", "label": "zebra", "geometry": {"x_min": 0, "y_min": 0, "x_max": 1, "y_max": 1}}
    ]
    source = ImportSource([{"name": n} for n in LABELS], GROUPS, iter(records), 15)
    with pytest.raises(InvalidInput, match=r"r12\.instances\[0\]\.label"):
        imports.commit_records(store, ref, "Default", source)
    with store.engine.connect() as conn:
        assert (
            conn.execute(
                select(func.count()).select_from(files).where(files.c.project_id == ref.id)
            ).scalar_one()
            == 0
        )
    store.close()


def test_records_naming_one_blob_are_each_checked(server_store: tuple[str, Path]) -> None:
    store, ref, sha = _project(server_store)
    width, height = 64, 48  # revhelpers.png's size
    records = [
        {"where": "r0", "name": "0.png", "sha256": sha},
        {"where": "r1", "name": "1.png", "sha256": sha, "width": width, "height": height},
        {"where": "r2", "name": "2.png", "sha256": sha, "width": width + 1, "height": height},
    ]
    with pytest.raises(InvalidInput, match=r"r2: declared"):
        imports.commit_records(store, ref, "Default", ImportSource([], [], iter(records), 3))
    result = imports.commit_records(store, ref, "Default", ImportSource([], [], iter(records[:2]), 2))
    assert result["files"] == 2
    with store.engine.connect() as conn:
        sizes = conn.execute(select(files.c.width, files.c.height).where(files.c.project_id == ref.id)).all()
    assert [tuple(s) for s in sizes] == [(width, height)] * 2
    store.close()


def test_a_large_import_refreshes_the_planner_statistics(
    server_store: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, ref, sha = _project(server_store)
    monkeypatch.setattr(imports, "ANALYZE_ROWS", 10)
    records = _records(sha, 12)
    imports.commit_records(
        store, ref, "Default", ImportSource([{"name": n} for n in LABELS], GROUPS, iter(records), 12)
    )
    with store.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            stats = conn.exec_driver_sql(
                "SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'instances'"
            ).scalar_one()
        else:
            stats = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stats WHERE tablename = 'instances'"
            ).scalar_one()
    assert stats > 0
    store.close()
