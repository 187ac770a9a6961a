"""The per-dataset counts (``dataset_counts``) against the scan they stand for.

Invariant tested: for every readable revision R and every query the aggregates answer, the
count they give equals the count of the scan (``slice_select``), and so does a conjunction
counted from one term's rows; the queries they must answer do get an answer (not a silent
fallback); and a store migrated to the table answers
from its head on, counting older revisions by the scan. Random edits (batched imports into
two datasets, uploads, added/replaced/deleted instances, files taken out of datasets), then
gc, on both stacks.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import func, select, text

from annostream.client.transports import EmbeddedTransport
from annostream.errors import NotFound, QueryError
from annostream.formats import ImportSource
from annostream.query.compile import checked_node
from annostream.query.counts import exact_count
from annostream.service import imports, ingest
from annostream.service.dataset_counts import count_problems
from annostream.service.datasets import DatasetRef, get_dataset, slice_count, slice_select
from annostream.service.fsck import check_store
from annostream.service.labels import (
    _scanned_label_counts,
    _summed_label_counts,
    label_counts,
    load_vocabulary,
)
from annostream.service.projects import LOCAL, ProjectRef, authorize
from annostream.service.revisions import collect_garbage, create_tag, revision_readable
from annostream.service.staging import stage_blobs
from annostream.store import Store
from annostream.store.db import alembic_config, create_db_engine
from annostream.store.tables import dataset_counts, instances, projects
from annostream.store.versioning import head_revision
from tests.revhelpers import new_project, png

LABELS = ["cat", "dog", "bird"]
GROUPS = [
    {"name": "weather", "kind": "select", "options": ["rain", "sun"]},
    {"name": "tags", "kind": "multi_select", "options": ["a", "b", "c"]},
    {"name": "score", "kind": "number"},
    {"name": "note", "kind": "text"},
]
# Queries the aggregates must answer, then ones they must leave to the scan.
ANSWERED = [
    "labels.cat > 0",
    "labels.cat > 1",
    "labels.dog >= 2",
    "labels.bird = 1",
    "labels.cat in [1, 3]",
    "labels.dog",
    "attributes.weather = rain",
    "attributes.weather = sun",
    "attributes.tags = a",
    "attributes.score = 2",
    "attributes.score = 7.25",
    'attributes.note = "hi"',
    "attributes.weather in [rain]",
]
SCANNED = [
    "labels.cat < 2",
    "labels.cat = 0",
    "labels.cat != 1",
    "attributes.weather in [rain, sun]",
    "attributes.weather != rain",
    "attributes.score > 1",
    "attributes.weather",
    "labels.cat > 1 and attributes.weather = rain",
    "file.width > 10",
    f'attributes.note = "{"x" * 300}"',
]


DRIVEN = [
    "labels.cat > 1 and attributes.weather = rain",
    "file.width > 10 and labels.dog >= 1",
    "attributes.tags = a and labels.cat = 0",
    "attributes.score = 2 and (labels.bird = 1 or attributes.weather = sun)",
]


def _instances(rng: random.Random) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for _ in range(rng.randint(0, 5)):
        x, y = rng.uniform(0, 10), rng.uniform(0, 10)
        attrs: dict[str, Any] = {}
        if rng.random() < 0.4:
            attrs["tags"] = rng.sample(["a", "b", "c"], rng.randint(0, 2))
        if rng.random() < 0.3:
            attrs["score"] = rng.choice([0.5, 2, 7.25])
        if rng.random() < 0.2:
            attrs["note"] = rng.choice(["hi", "x" * 300])
        geometry = {"x_min": x, "y_min": y, "x_max": x + 3, "y_max": y + 4}
        out.append({"type": "box", "label": rng.choice(LABELS), "geometry": geometry, "attributes": attrs})
    if rng.random() < 0.7:
        out.append({"type": "global", "attributes": {"weather": rng.choice(["rain", "sun"])}})
    return out


def _scan(store: Store, ds: DatasetRef, query: str, rev: int) -> int:
    with store.engine.connect() as conn:
        inner = slice_select(conn, ds, query, rev).order_by(None).subquery()
        return int(conn.execute(select(func.count()).select_from(inner)).scalar_one())


def _fast(store: Store, ds: DatasetRef, query: str, rev: int) -> int | None:
    with store.engine.connect() as conn:
        return exact_count(conn, ds.project.id, ds.id, checked_node(conn, query), rev)


def _check_every_revision(store: Store, ref: ProjectRef, datasets: list[DatasetRef], since: int = 0) -> int:
    """Fast == scan at every readable revision from ``since``; None before it. How many compared."""
    compared = 0
    with store.engine.connect() as conn:
        head = head_revision(conn, ref.id)
        readable = [r for r in range(1, head + 1) if revision_readable(conn, ref.id, r)]
    for rev in readable:
        for ds in datasets:
            for query in ANSWERED:
                fast = _fast(store, ds, query, rev)
                if rev < since:
                    assert fast is None, (query, rev)
                    continue
                assert fast is not None, query
                assert fast == _scan(store, ds, query, rev), (ds.name, query, rev)
                compared += 1
        for ds in datasets:  # a whole dataset's per-label counts: summed, or scanned before since
            with store.engine.connect() as conn:
                summed = _summed_label_counts(conn, ref.id, ds.id, rev)
                scanned = _scanned_label_counts(conn, slice_select(conn, ds, None, rev).order_by(None), rev)
            assert summed == (None if rev < since else scanned), (ds.name, rev)
            if not _has_dataset(store, ds, rev):
                continue
            assert label_counts(store, ref, ds.name, as_of=rev)["labels"] == [
                {"id": lab["id"], "name": lab["name"], "files": f, "instances": n}
                for lab, (f, n) in _per_label(store, ref, rev, scanned)
            ]
        for ds in datasets:
            for query in DRIVEN:  # conjunctions walked from a term's rows: any revision
                assert slice_count(store, ds, query, rev)[0] == _scan(store, ds, query, rev), (query, rev)
    for ds in datasets:
        for query in SCANNED:
            assert _fast(store, ds, query, head) is None, query
    return compared


def _has_dataset(store: Store, ds: DatasetRef, rev: int) -> bool:
    try:
        get_dataset(store, ds.project, ds.name, rev)
    except NotFound:
        return False
    return True


def _per_label(
    store: Store, ref: ProjectRef, rev: int, counted: dict[int, tuple[int, int]]
) -> list[tuple[dict[str, Any], tuple[int, int]]]:
    """Every label of the vocabulary at ``rev`` with its (files, instances), by label id."""
    with store.engine.connect() as conn:
        vocab = load_vocabulary(conn, ref.id, rev)
    return sorted(
        ((e, counted.get(db_id, (0, 0))) for db_id, e in vocab.by_id.items()), key=lambda p: p[0]["id"]
    )


def _project(server_store: tuple[str, Path]) -> tuple[Store, ProjectRef, str]:
    url, store_dir = server_store
    p = new_project("embedded", url, store_dir, prefix="counts", vocabulary=False)
    store = Store.open(store_dir)
    ref = authorize(store, LOCAL, p.string_id, "editor")
    sha = stage_blobs(store, ref, [(png(), "body")])[0].sha256
    return store, ref, sha


def _import(store: Store, ref: ProjectRef, sha: str, dataset: str, rng: random.Random, n: int) -> None:
    records = [
        {
            "where": f"r{i}",
            "name": f"{dataset}-{rng.random()}.png",
            "sha256": sha,
            "instances": _instances(rng),
        }
        for i in range(n)
    ]
    imports.commit_records(
        store, ref, dataset, ImportSource([{"name": x} for x in LABELS], GROUPS, iter(records), n)
    )


def _edit(store: Store, ref: ProjectRef, rng: random.Random, datasets: list[DatasetRef]) -> None:
    """One random write: an upload, added or replaced instances, a deletion, or a removal."""
    with store.engine.connect() as conn:
        members = [
            (r.dataset_id, r.file_id)
            for r in conn.execute(
                text("SELECT dataset_id, file_id FROM dataset_files WHERE deleted_rev IS NULL ORDER BY id")
            )
            if r.dataset_id in {d.id for d in datasets}
        ]
        live = [
            r[0]
            for r in conn.execute(
                select(instances.c.id).where(
                    instances.c.project_id == ref.id, instances.c.deleted_rev.is_(None)
                )
            )
        ]
    what = rng.choice(["upload", "add", "replace", "delete", "remove"])
    if what == "upload" or not members:
        ds = rng.choice(datasets)
        ingest.add_file(
            store,
            ref,
            ds.name,
            f"u{rng.random()}.png",
            png(color=(rng.randint(0, 255), 1, 2)),
            _instances(rng),
        )
    elif what in ("add", "replace"):
        _, file_id = rng.choice(members)
        ingest.write_instances(store, ref, file_id, _instances(rng), replace=what == "replace")
    elif what == "delete" and live:
        ingest.delete_instance(store, ref, rng.choice(live))
    else:
        ds_id, file_id = rng.choice(members)
        ingest.remove_file(store, ref, ds_id, file_id)


def test_fast_counts_equal_the_scan_at_every_revision(
    server_store: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imports._Batch, "FILES", 4)
    monkeypatch.setattr(imports._Batch, "INSTANCES", 9)
    store, ref, sha = _project(server_store)
    rng = random.Random(18)
    _import(store, ref, sha, "A", rng, 13)
    _import(store, ref, sha, "B", rng, 7)
    datasets = [get_dataset(store, ref, "A"), get_dataset(store, ref, "B")]
    for _ in range(25):
        _edit(store, ref, rng, datasets)
    _import(store, ref, sha, "A", rng, 5)
    assert _check_every_revision(store, ref, datasets) > 0
    with store.engine.connect() as conn:
        assert count_problems(conn) == []
    # gc keeps a tagged revision and the recent ones; what stays readable still agrees.
    with store.engine.connect() as conn:
        head = head_revision(conn, ref.id)
    create_tag(store, ref, "keep", head - 20)
    gc = collect_garbage(store, head - 5, project=ref.string_id, keep_tags=True)
    assert gc.rows["dataset_counts"] > 0
    with store.engine.connect() as conn:
        assert not revision_readable(conn, ref.id, head - 10)
    assert _check_every_revision(store, ref, datasets) > 0
    # slice_count answers what the scan does, and a bad query keeps its 400 with its position.
    for query in ANSWERED[:3] + SCANNED[:3]:
        assert slice_count(store, datasets[0], query)[0] == _scan(store, datasets[0], query, head)
    with pytest.raises(QueryError) as bad:
        slice_count(store, datasets[0], "labels.cat > two")
    assert (bad.value.detail["line"], bad.value.detail["column"]) == (1, 1)
    with pytest.raises(QueryError) as bad:
        slice_count(store, datasets[0], "labels.cat > > 2")
    assert bad.value.detail["column"] == 14
    with pytest.raises(QueryError):
        slice_count(store, datasets[0], "labels.unicorn > 1")
    with pytest.raises(QueryError):
        slice_count(store, datasets[0], "attributes.weather = hail")


def test_fsck_reports_counts_that_drifted(server_store: tuple[str, Path]) -> None:
    store, ref, sha = _project(server_store)
    _import(store, ref, sha, "A", random.Random(5), 6)
    assert check_store(store, verify_hashes=False).clean
    with store.engine.begin() as conn:
        row = conn.execute(
            select(dataset_counts.c.id).where(dataset_counts.c.deleted_rev.is_(None)).limit(1)
        ).scalar_one()
        conn.execute(
            dataset_counts.update().where(dataset_counts.c.id == row).values(files=dataset_counts.c.files + 1)
        )
    report = check_store(store, verify_hashes=False)
    assert not report.clean
    assert any(p.startswith("dataset_counts:") for p in report.database)


def test_migration_backfills_the_head(stack: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A store written at head, taken back to the schema before the table and migrated again:
    the backfill answers at the head (and on), older revisions are counted by the scan."""
    if stack == "pg":
        store_dir = request.getfixturevalue("services").make_store_dir(tmp_path / "s")
        url = json.loads((store_dir / "store.json").read_text())["db"]
    else:
        store_dir = tmp_path / "s"
        url = f"sqlite:///{store_dir / 'annostream.db'}"
    EmbeddedTransport(store_dir, create=True).list_projects()
    p = new_project("embedded", url, store_dir, prefix="mig", vocabulary=False)
    store = Store.open(store_dir)
    ref = authorize(store, LOCAL, p.string_id, "editor")
    sha = stage_blobs(store, ref, [(png(), "body")])[0].sha256
    rng = random.Random(7)
    _import(store, ref, sha, "A", rng, 9)
    datasets = [get_dataset(store, ref, "A")]
    for _ in range(6):
        _edit(store, ref, rng, datasets)
    store.engine.dispose()
    engine = create_db_engine(url)
    for verb, target in (("downgrade", "0005_attr_index"), ("upgrade", "head")):
        cfg = alembic_config(url)
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            getattr(command, verb)(cfg, target)
    engine.dispose()
    store = Store.open(store_dir)
    with store.engine.connect() as conn:
        head = head_revision(conn, ref.id)
        assert (
            conn.execute(select(projects.c.counts_from).where(projects.c.id == ref.id)).scalar_one() == head
        )
        assert count_problems(conn) == []
    assert _check_every_revision(store, ref, datasets, since=head) > 0
    _edit(store, ref, rng, datasets)  # writes after the migration keep them
    assert _check_every_revision(store, ref, datasets, since=head) > 0
