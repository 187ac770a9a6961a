"""A slice's first pages (keyset pages read without listing the slice's ids) hold exactly the
files of the slice, in id order, whether a page is filled by probing files one by one within
the probe window, by the set past it, or by both. Both stacks."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from annostream.formats import ImportSource
from annostream.service import datasets, imports
from annostream.service.datasets import DatasetRef, slice_ids
from annostream.service.items import page_items
from annostream.store.tables import datasets as datasets_table
from tests.test_import_batches import GROUPS, LABELS, _project, _records

QUERIES = [
    "labels.cat > 1",
    "labels.cat = 0",
    "labels.dog < 2",
    "not labels.bird >= 1",
    "attributes.weather = rain",
    "attributes.weather != rain",
    "attributes.tags = b",
    "labels.cat >= 1 and attributes.weather = sun",
    "labels.cat > 1 or labels.dog > 2",
    "labels.cat > 99",
    "file.width >= 1",
]


@pytest.mark.parametrize("window", [1, 5, 10_000])
def test_pages_hold_the_slice_in_id_order(
    server_store: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, window: int
) -> None:
    monkeypatch.setattr(datasets, "PROBE_WINDOW", window)
    store, ref, sha = _project(server_store)
    records = _records(sha, 40, seed=11)
    source = ImportSource([{"name": n} for n in LABELS], GROUPS, iter(records), 40)
    imports.commit_records(store, ref, "Default", source)
    with store.engine.connect() as conn:
        ds_id = conn.execute(
            select(datasets_table.c.id).where(datasets_table.c.project_id == ref.id)
        ).scalar_one()
    ds = DatasetRef(ds_id, "Default", ref)
    for query in QUERIES:
        want = slice_ids(store, ds, query)[0].tolist()
        for limit in (1, 3, 64):
            got: list[int] = []
            after = None
            while True:
                page, _ = page_items(store, ds, query=query, after=after, limit=limit)
                got += [item["id"] for item in page]
                if len(page) < limit:
                    break
                after = got[-1]
            assert got == want, (query, limit)
    store.close()
