"""The first items of a view without its id list: the keyset page operation, and the SDK's
first ``ds[0]`` / iteration reading it at the revision that its id list is read at later."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from annostream import InvalidInput, NotFound, Project, QueryError
from tests.conftest import Source
from tests.revhelpers import box, new_project, png


def test_pages_chained_by_after_are_the_slice(project: Project) -> None:
    ids, rev = project.transport.ids(project.string_id, "Default", "labels.cat >= 1", None)
    seen: list[int] = []
    after = None
    while True:
        pairs, page_rev = project.transport.page(
            project.string_id, "Default", "labels.cat >= 1", None, after, 7, False
        )
        assert page_rev == rev and all(blob is None for _, blob in pairs)
        if not pairs:
            break
        seen += [item["id"] for item, _ in pairs]
        after = seen[-1]
    assert seen == ids.tolist() and len(seen) > 7


def test_page_with_inline_blobs(project: Project, source: Source) -> None:
    pairs, _ = project.transport.page(project.string_id, "Default", None, None, None, 3, True)
    assert len(pairs) == 3
    for item, blob in pairs:
        assert blob == (source.images_dir / item["file"]["name"]).read_bytes()


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
def test_page_refuses_bad_parameters(project: Project, args: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        project.transport.call("slice_page", project=project.string_id, dataset="Default", **args)
    assert info.value.status == 422 and field in str(info.value.detail)


def test_page_refuses_unknown_things_and_bad_queries(project: Project) -> None:
    with pytest.raises(NotFound):
        project.transport.call("slice_page", project=project.string_id, dataset="nope")
    with pytest.raises(NotFound):
        project.transport.call("slice_page", project=project.string_id, dataset="Default", as_of=10**6)
    with pytest.raises(QueryError) as info:
        project.transport.call(
            "slice_page", project=project.string_id, dataset="Default", query="labels.cat >"
        )
    assert info.value.status == 400 and info.value.detail["column"] > 0


@pytest.fixture(params=["http", "embedded"])
def editor(request: pytest.FixtureRequest, server_store: tuple[str, Path], server_client: Any) -> Project:
    return new_project(request.param, server_client, server_store[1], prefix="fp")


def test_first_item_pins_the_revision_its_ids_are_read_at(editor: Project) -> None:
    made = [
        editor.upload("Default", data=png(color=(i, i, i)), filename=f"{i}.png", instances=[box(1, 1, 5, 5)])[
            "id"
        ]
        for i in range(5)
    ]
    view = editor.dataset("Default", batch_size=2)
    first = view[0]
    assert first["file"]["name"] == "0.png"
    pinned = view.revision
    editor.remove_file("Default", made[1])
    editor.upload("Default", data=png(color=(99, 9, 9)), filename="late.png")
    assert len(view) == 5, "the id list is read at the first page's revision"
    assert [s["file"]["name"] for s in view] == [f"{i}.png" for i in range(5)]
    assert view[1]["file"]["name"] == "1.png" and view.revision == pinned
    fresh = editor.dataset("Default", batch_size=2)
    assert [s["file"]["name"] for s in fresh] == ["0.png", "2.png", "3.png", "4.png", "late.png"]
    assert len(fresh) == 5 and fresh.revision == editor.revision


def test_a_short_first_page_is_the_whole_view(editor: Project) -> None:
    for i in range(3):
        editor.upload("Default", data=png(color=(i, 1, 1)), filename=f"s{i}.png")
    view = editor.dataset("Default", batch_size=10)
    assert [s["file"]["name"] for s in view] == ["s0.png", "s1.png", "s2.png"]
    assert len(view) == 3 and view[2]["file"]["name"] == "s2.png" and view[-1]["file"]["name"] == "s2.png"
    with pytest.raises(IndexError):
        view[3]
    empty = editor.dataset("Default", query="labels.cat > 100")
    assert list(empty) == [] and len(empty) == 0
