"""The schema the migrations build is the one ``store/tables.py`` declares, on both stacks,
and the covering indexes of query lookups are used (migration 0007)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from annostream.client.transports import EmbeddedTransport
from annostream.store import Store
from annostream.store.tables import metadata


def test_the_migrated_schema_is_the_declared_one(
    new_store_dir: Callable[[Path], Path], tmp_path: Path
) -> None:
    store_dir = new_store_dir(tmp_path / "store")
    EmbeddedTransport(store_dir, create=True).list_projects()
    store = Store.open(store_dir)
    try:
        with store.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    finally:
        store.close()


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (
            "SELECT file_id FROM file_label_counts WHERE label_id = 1 AND count > 2 "
            "AND created_rev <= 5 AND (deleted_rev IS NULL OR deleted_rev > 5)",
            "ix_file_label_counts_by_label",
        ),
        (
            "SELECT file_id FROM dataset_files WHERE dataset_id = 1 "
            "AND created_rev <= 5 AND (deleted_rev IS NULL OR deleted_rev > 5)",
            "ix_dataset_files_by_dataset",
        ),
        (
            "SELECT file_id FROM file_attribute_values WHERE key = 'k' AND kind = 'text' AND text = 'v' "
            "AND created_rev <= 5 AND (deleted_rev IS NULL OR deleted_rev > 5)",
            "ix_file_attribute_values_by_text",
        ),
    ],
)
def test_lookups_test_lifetimes_in_the_index(tmp_path: Path, query: str, index: str) -> None:
    """SQLite's plan names the covering index: no table row is read to test a lifetime."""
    EmbeddedTransport(tmp_path, create=True).list_projects()
    store = Store.open(tmp_path)
    try:
        with store.engine.connect() as conn:
            plan = " | ".join(row[3] for row in conn.execute(text("EXPLAIN QUERY PLAN " + query)))
    finally:
        store.close()
    assert f"USING COVERING INDEX {index}" in plan, plan
