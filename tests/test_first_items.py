"""A fresh view's first items, read without its id list: a keyset page of one item, then
pages growing up to ``batch_size`` items, then the id list for the rest, all at the revision
the first page pinned. Both transports, both stacks; the page operation's refusals; and on
SQLite, the first page's plan (it walks the dataset's files in id order and stops at the
limit, probing each file's derived rows by index)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from annostream import InvalidInput, NotFound, Project, QueryError
from annostream.client.transports import EmbeddedTransport
from annostream.service import datasets
from annostream.service.datasets import DatasetRef
from annostream.service.items import page_items
from annostream.service.projects import LOCAL, authorize
from tests.revhelpers import box, new_project, png


@pytest.fixture(params=["http", "embedded"])
def editor(request: pytest.FixtureRequest, server_store: tuple[str, Path], server_client: Any) -> Project:
    return new_project(request.param, server_client, server_store[1], prefix="fi")


def _upload(editor: Project, n: int, score: bool = False) -> list[int]:
    """``n`` files; file i holds i % 4 cats, rain on every third one (and with ``score``, a
    score of i % 4)."""
    made = []
    for i in range(n):
        cats = [box(1, 1, 5, 5) for _ in range(i % 4)]
        attributes: dict[str, Any] = {"weather": "rain"} if i % 3 == 0 else {}
        if score:
            attributes["score"] = i % 4
        made.append(
            editor.upload(
                "Default",
                data=png(color=(i, 2, 3)),
                filename=f"{i:02d}.png",
                instances=[*cats, box(2, 2, 6, 6, label="dog", attributes=attributes)],
            )["id"]
        )
    return made


class PageLog:
    """The limits of the keyset pages a project's transport is asked for (calls go through)."""

    def __init__(self, project: Project) -> None:
        self.limits: list[int] = []
        self.ids_calls = 0
        transport = project.transport
        page, ids = transport.page, transport.ids

        def logged_page(*args: Any) -> Any:
            self.limits.append(args[5])
            return page(*args)

        def logged_ids(*args: Any) -> Any:
            self.ids_calls += 1
            return ids(*args)

        transport.page, transport.ids = logged_page, logged_ids  # type: ignore[method-assign]


@pytest.mark.parametrize(
    "query", [None, "labels.cat > 1", "attributes.weather = rain", "labels.cat >= 1 and labels.dog = 1"]
)
def test_pages_grow_and_chain_into_the_id_list(editor: Project, query: str | None) -> None:
    made = _upload(editor, 24)
    want = editor.dataset("Default", query=query).ids.tolist()
    assert set(want) <= set(made) and len(want) > 3
    view = editor.dataset("Default", query=query, batch_size=3 if query else 10)
    log = PageLog(editor)
    first = next(iter(view))
    assert log.limits == [1] and log.ids_calls == 0, "the first item is a page of one"
    whole = [s["file"]["id"] for s in view]
    assert whole == want, "no gap, no repeat across the growing pages and the id list"
    assert first["file"] == view[0]["file"] and first["instances"] == view[0]["instances"]
    assert first["file"]["id"] == whole[0]
    assert log.limits == ([1, 2] if query else [1, 8, 1]), "1, 8x, ..., up to batch_size in all"
    assert log.ids_calls == 1
    assert [view[i]["file"]["id"] for i in range(len(want))] == want


def test_first_item_pins_the_revision_its_pages_and_ids_are_read_at(editor: Project) -> None:
    made = _upload(editor, 12)
    view = editor.dataset("Default", batch_size=64)
    it = iter(view)
    assert next(it)["file"]["name"] == "00.png"
    pinned = view.revision
    editor.remove_file("Default", made[1])
    editor.remove_file("Default", made[11])
    editor.upload("Default", data=png(color=(99, 9, 9)), filename="late.png")
    assert [s["file"]["name"] for s in it] == [f"{i:02d}.png" for i in range(1, 12)]
    assert len(view) == 12 and view.revision == pinned and view[1]["file"]["name"] == "01.png"
    fresh = editor.dataset("Default", batch_size=4)
    names = [s["file"]["name"] for s in fresh]
    assert names == [f"{i:02d}.png" for i in range(12) if i not in (1, 11)] + ["late.png"]
    assert fresh.revision == editor.revision


def test_pages_that_end_the_view_make_its_id_list(editor: Project) -> None:
    _upload(editor, 5)
    view = editor.dataset("Default", batch_size=64)
    log = PageLog(editor)
    assert [s["file"]["name"] for s in view] == [f"{i:02d}.png" for i in range(5)]
    assert log.limits == [1, 8] and log.ids_calls == 0, "a short page is the end of the view"
    assert len(view) == 5 and view[-1]["file"]["name"] == "04.png" and log.ids_calls == 0
    with pytest.raises(IndexError):
        view[5]
    one = editor.dataset("Default", query='file.name = "03.png"')
    assert [s["file"]["name"] for s in one] == ["03.png"] and len(one) == 1
    empty = editor.dataset("Default", query="labels.cat > 100")
    assert list(empty) == [] and len(empty) == 0
    with pytest.raises(QueryError):
        next(iter(editor.dataset("Default", query="labels.cat >")))


@pytest.mark.parametrize(
    "args, field",
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"after": -1}, "after"),
        ({"blobs": "all"}, "blobs"),
        ({"as_of": -2}, "as_of"),
    ],
)
def test_page_refuses_bad_parameters(editor: Project, args: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        editor.transport.call("slice_page", project=editor.string_id, dataset="Default", **args)
    assert info.value.status == 422 and field in str(info.value.detail)


def test_page_refuses_unknown_things_and_bad_queries(editor: Project) -> None:
    _upload(editor, 1)
    with pytest.raises(NotFound):
        editor.transport.call("slice_page", project=editor.string_id, dataset="nope")
    with pytest.raises(NotFound):
        editor.transport.call("slice_page", project=editor.string_id, dataset="Default", as_of=10**6)
    with pytest.raises(QueryError) as info:
        editor.transport.call("slice_page", project=editor.string_id, dataset="Default", query="labels.cat >")
    assert info.value.status == 400 and info.value.detail["column"] > 0


@pytest.mark.parametrize("query", ["labels.cat > 2", "attributes.weather = rain", "attributes.score > 2.5"])
def test_first_page_plan_stops_at_its_limit(
    stack: str, server_store: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    """SQLite without statistics (a store that no large import analysed): the probe looks
    each file's row up by file id, and the page reads the dataset's files in the index's
    order, so no sort of the whole slice stands before the limit."""
    if stack != "sqlite":
        pytest.skip("the plan checked is SQLite's")
    editor = new_project("embedded", "", server_store[1], prefix="plan")
    EmbeddedTransport(server_store[1]).create_attribute_group(editor.string_id, "score", "number", [])
    made = _upload(editor, 6, score=True)  # after "00.png", "03.png" is the first with each
    monkeypatch.setattr(datasets, "PROBE_WINDOW", 2)
    store = editor.transport.store
    ref = authorize(store, LOCAL, editor.string_id, "viewer")
    ds: DatasetRef = datasets.get_dataset(store, ref, "Default")
    statements: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        if "JOIN dataset_files" in sql and "LIMIT" in sql:
            statements.append((sql, params))

    event.listen(store.engine, "before_cursor_execute", keep)
    try:
        page, _ = page_items(store, ds, query=query, after=made[0], limit=1)
    finally:
        event.remove(store.engine, "before_cursor_execute", keep)
    assert [item["file"]["name"] for item in page] == ["03.png"]
    assert len(statements) == 2, "the probe window, then the set past it"
    with store.engine.connect() as conn:
        for (sql, params), how in zip(statements, ("probe", "set"), strict=True):
            plan = " | ".join(row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params))
            assert "TEMP B-TREE FOR ORDER BY" not in plan, (how, plan)
            if how == "probe":
                assert "CORRELATED" in plan and "file_id=?" in plan.split("CORRELATED")[1], plan
