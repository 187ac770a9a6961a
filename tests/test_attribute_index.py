"""The derived attribute index: kept by every write, read at any revision, and backfilled by
its migration with the whole history of a store made before it existed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, func, insert, select

from annostream import Project
from annostream.service.datasets import DatasetRef, slice_ids
from annostream.service.projects import ProjectRef
from annostream.store import Store
from annostream.store.db import alembic_config
from annostream.store.tables import (
    attribute_groups,
    attribute_options,
    dataset_files,
    datasets,
    file_attribute_values,
    files,
    instances,
    projects,
    revisions,
)
from tests.revhelpers import box, new_project, png


@pytest.fixture(params=["http", "embedded"])
def editor(request: pytest.FixtureRequest, server_store: tuple[str, Path], server_client: Any) -> Project:
    return new_project(request.param, server_client, server_store[1], prefix="ai")


def names(project: Project, query: str, as_of: int | None = None) -> list[str]:
    ds = project.dataset("Default", query=query)
    if as_of is not None:
        ds = ds.as_of(as_of)
    return sorted(s["file"]["name"] for s in ds)


def test_attribute_queries_follow_edits_and_keep_old_revisions(editor: Project) -> None:
    a = editor.upload(
        "Default",
        data=png(),
        filename="a.png",
        instances=[{"type": "global", "attributes": {"weather": "rain"}}],
    )
    editor.upload(
        "Default",
        data=png(color=(9, 9, 9)),
        filename="b.png",
        instances=[
            box(1, 1, 5, 5, attributes={"weather": "sun"}),
            box(2, 2, 6, 6, attributes={"weather": "sun"}),
        ],
    )
    first = editor.revision
    assert names(editor, 'attributes.weather = "rain"') == ["a.png"]
    assert names(editor, "attributes.weather in [rain, sun]") == ["a.png", "b.png"]
    assert names(editor, "attributes.weather") == ["a.png", "b.png"]

    editor.write_instances(a["id"], [{"type": "global", "attributes": {"weather": "sun"}}], replace=True)
    assert names(editor, 'attributes.weather = "rain"') == []
    assert names(editor, "attributes.weather = sun") == ["a.png", "b.png"]
    assert names(editor, 'attributes.weather = "rain"', as_of=first) == ["a.png"]
    assert names(editor, "attributes.weather != rain", as_of=first) == ["b.png"]

    # One of b's two carriers goes: b still carries "sun"; the other goes too: it does not.
    b_instances = [i["id"] for i in editor.dataset("Default", query="file.name = 'b.png'")[0]["instances"]]
    editor.delete_instance(b_instances[0])
    assert names(editor, "attributes.weather = sun") == ["a.png", "b.png"]
    editor.delete_instance(b_instances[1])
    assert names(editor, "attributes.weather = sun") == ["a.png"]
    assert names(editor, "not attributes.weather") == ["b.png"]
    assert names(editor, "attributes.weather = sun", as_of=first) == ["b.png"]


def test_migration_backfills_the_history(tmp_path: Path) -> None:
    """A store at the first schema with edits over three revisions, then migrated: every
    revision answers attribute queries from the index as its instances say."""
    url = f"sqlite:///{tmp_path / 'annostream.db'}"
    command.upgrade(alembic_config(url), "0001")
    engine = create_engine(url)
    with engine.begin() as conn:
        pid = conn.execute(
            insert(projects).values(string_id="old", name="old", is_public=False, head_rev=3)
        ).inserted_primary_key[0]
        for rev in (1, 2, 3):
            conn.execute(insert(revisions).values(project_id=pid, rev=rev, message=f"r{rev}"))
        gid = conn.execute(
            insert(attribute_groups).values(project_id=pid, name="weather", kind="select", created_rev=1)
        ).inserted_primary_key[0]
        tid = conn.execute(
            insert(attribute_groups).values(project_id=pid, name="tags", kind="multi_select", created_rev=1)
        ).inserted_primary_key[0]
        for option in ("rain", "sun"):
            conn.execute(insert(attribute_options).values(group_id=gid, name=option, created_rev=1))
            conn.execute(insert(attribute_options).values(group_id=tid, name=option, created_rev=1))
        ds_id = conn.execute(
            insert(datasets).values(project_id=pid, name="Default", created_rev=1)
        ).inserted_primary_key[0]
        fids = []
        for name in ("x.png", "y.png"):
            fid = conn.execute(
                insert(files).values(
                    project_id=pid, type="image", original_filename=name, metadata={}, created_rev=1
                )
            ).inserted_primary_key[0]
            conn.execute(insert(dataset_files).values(dataset_id=ds_id, file_id=fid, created_rev=1))
            fids.append(fid)
        x, y = fids

        def inst(file_id: int, attrs: dict[str, Any], created: int, deleted: int | None) -> None:
            conn.execute(
                insert(instances).values(
                    project_id=pid,
                    file_id=file_id,
                    type="global",
                    geometry={},
                    attributes=attrs,
                    created_rev=created,
                    deleted_rev=deleted,
                )
            )

        inst(x, {"weather": "rain"}, 1, 2)  # x: rain at 1, sun at 2, rain again at 3
        inst(x, {"weather": "sun"}, 2, 3)
        inst(x, {"weather": "rain"}, 3, None)
        inst(y, {"tags": ["sun"]}, 1, None)  # y: tagged sun throughout, rain from 2
        inst(y, {"tags": ["rain", "sun"]}, 2, None)
    engine.dispose()

    store = Store.open(tmp_path)  # migrates to head
    try:
        ds = DatasetRef(ds_id, "Default", ProjectRef(pid, "old", "old", False, "admin"))

        def at(query: str, rev: int) -> list[int]:
            return [int(i) for i in slice_ids(store, ds, query, rev)[0]]

        assert [at('attributes.weather = "rain"', r) for r in (1, 2, 3)] == [[x], [], [x]]
        assert [at("attributes.weather = sun", r) for r in (1, 2, 3)] == [[], [x], []]
        assert [at("attributes.tags = rain", r) for r in (1, 2, 3)] == [[], [y], [y]]
        assert [at("attributes.tags = sun", r) for r in (1, 2, 3)] == [[y], [y], [y]]
        with store.engine.connect() as conn:
            rain_rows = conn.execute(
                select(func.count())
                .select_from(file_attribute_values)
                .where(file_attribute_values.c.file_id == x, file_attribute_values.c.text == "rain")
            ).scalar_one()
        assert rain_rows == 2, "rain's two lifetimes on x, with the gap at revision 2"
    finally:
        store.close()
