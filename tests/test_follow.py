"""Follow mode: every committed change exactly once, in commit order, across a reconnect."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from annostream import Project
from annostream.client.follow import Cursor
from annostream.errors import BadRequest
from annostream.service.changes import changes
from annostream.service.projects import LOCAL, authorize
from annostream.store import Store
from tests.conftest import make_coco
from tests.revhelpers import box, fresh, new_project, png

TRANSPORTS = ["http", "embedded"]


@pytest.fixture(params=TRANSPORTS)
def editor(request: pytest.FixtureRequest, server_store: tuple[str, Path], server_client: Any) -> Project:
    """A fresh project as its admin: over HTTP to the app in this process, or embedded."""
    return new_project(request.param, server_client, server_store[1], prefix="fol")


def _script(
    project: Project, tmp_path: Path
) -> tuple[list[tuple[int, str, int]], list[tuple[int, str, int]]]:
    """Write a known history; return the events a follower of Default should see, and those
    a follower of the slice ``labels.cat > 0`` should see: (rev, kind, file_id)."""
    every: list[tuple[int, str, int]] = []
    cats: list[tuple[int, str, int]] = []
    a = project.upload("Default", data=png(color=(1, 0, 0)), filename="a.png", instances=[box(1, 1, 5, 5)])
    every.append((a["revision"], "file_added", a["id"]))
    cats.append((a["revision"], "file_added", a["id"]))
    b = project.upload("Default", data=png(color=(2, 0, 0)), filename="b.png")
    every.append((b["revision"], "file_added", b["id"]))
    r = project.write_instances(b["id"], [box(1, 1, 3, 3, "dog")])["revision"]
    every.append((r, "instances_changed", b["id"]))
    ann = make_coco(tmp_path / "coco", 4, seed=7)
    imported = project.import_coco(ann, tmp_path / "coco" / "images", dataset="Default")
    head = fresh(project).dataset("Default").as_of(imported["revision"])
    for sample in head:
        if sample["file"]["id"] in (a["id"], b["id"]):
            continue
        every.append((imported["revision"], "file_added", sample["file"]["id"]))
        if "cat" in sample["labels"]:
            cats.append((imported["revision"], "file_added", sample["file"]["id"]))
    project.upload("Other", data=png(color=(3, 0, 0)), filename="elsewhere.png", instances=[box(1, 1, 2, 2)])
    project.create_label("bird")
    r = project.remove_file("Default", a["id"])["revision"]
    every.append((r, "file_removed", a["id"]))
    cats.append((r, "file_removed", a["id"]))
    r = project.write_instances(b["id"], [box(2, 2, 4, 4)], replace=True)["revision"]
    every.append((r, "instances_changed", b["id"]))
    cats.append((r, "file_added", b["id"]))
    inst = fresh(project).dataset("Default").as_of(r)
    cat_id = next(s for s in inst if s["file"]["id"] == b["id"])["instances"][0]["id"]
    r = project.delete_instance(cat_id)["revision"]
    every.append((r, "instances_changed", b["id"]))
    cats.append((r, "file_removed", b["id"]))
    return every, cats


def _key(events: list[dict[str, Any]]) -> list[tuple[int, str, int]]:
    return [(e["rev"], e["kind"], e["file_id"]) for e in events]


def test_follow_sees_every_change_once_in_order_across_a_reconnect(editor: Project, tmp_path: Path) -> None:
    editor.create_dataset("Default")
    start = editor.revision
    got: list[dict[str, Any]] = []
    first = editor.dataset("Default").follow(since=start, wait=0.5)
    expected_box: list[list[tuple[int, str, int]]] = []

    writer = threading.Thread(target=lambda: expected_box.append(_script(editor, tmp_path)[0]))
    writer.start()
    for event in first:
        got.append(event)
        if len(got) == 4:  # inside the import's commit: it added four files at once
            break
    cursor = first.cursor
    first.close()
    assert cursor.skip > 0, "stopped in the middle of a commit"
    writer.join()
    expected = expected_box[0]
    final = max(rev for rev, _, _ in expected)
    resumed = fresh(editor).dataset("Default").follow(since=cursor, wait=0.5, until=editor.revision)
    got += list(resumed)
    assert _key(got) == expected
    assert resumed.cursor == Cursor(editor.revision) == Cursor(final)
    assert all(e["dataset"] == "Default" for e in got)
    assert list(editor.dataset("Default").follow(since=resumed.cursor, wait=0, idle_timeout=0.3)) == []


def test_follow_a_slice(editor: Project, tmp_path: Path) -> None:
    editor.create_dataset("Default")
    start = editor.revision
    _, cats = _script(editor, tmp_path)
    follow = editor.dataset("Default").follow(since=start, query="labels.cat > 0", until=editor.revision)
    assert _key(list(follow)) == cats
    sliced = editor.dataset("Default").slice("labels.cat > 0").follow(since=start, until=editor.revision)
    assert _key(list(sliced)) == cats


def test_follow_from_a_view_starts_at_its_revision_and_long_polls(editor: Project) -> None:
    editor.upload("Default", data=png(), filename="old.png")
    view = editor.dataset("Default").snapshot()
    follow = view.follow(wait=5)

    def later() -> None:
        time.sleep(0.6)
        editor.upload("Default", data=png(color=(9, 9, 9)), filename="new.png", instances=[box(1, 1, 2, 2)])

    threading.Thread(target=later).start()
    started = time.monotonic()
    event = next(follow)
    waited = time.monotonic() - started
    assert event["kind"] == "file_added" and event["rev"] == view.revision + 1
    assert 0.4 < waited < 4, waited
    follow.close()
    assert list(follow) == []


def test_follow_items_yields_new_samples(editor: Project) -> None:
    editor.create_dataset("Default")
    start = editor.revision
    made = editor.upload("Default", data=png(), filename="n.png", instances=[box(1, 1, 9, 9)])
    editor.write_instances(made["id"], [box(2, 2, 3, 3, "dog")])
    editor.remove_file("Default", made["id"])
    samples = list(editor.dataset("Default").follow_items(since=start, until=editor.revision))
    assert [s["labels"] for s in samples] == [["cat"], ["cat", "dog"]]
    assert [s["event"]["kind"] for s in samples] == ["file_added", "instances_changed"]
    assert samples[0]["image"].size == (64, 48)


def test_change_pages_hold_whole_commits(server_store: tuple[str, Path], tmp_path: Path) -> None:
    url, store_dir = server_store
    project = new_project("embedded", url, store_dir, prefix="pages")
    project.create_dataset("Default")
    start = project.revision
    ann = make_coco(tmp_path / "coco", 5, seed=2)
    project.import_coco(ann, tmp_path / "coco" / "images")
    project.upload("Default", data=png(), filename="one.png")
    store = Store.open(store_dir)
    ref = authorize(store, LOCAL, project.string_id, "viewer")
    page = changes(store, ref, start, dataset="Default", limit=2)
    assert len(page["events"]) == 5 and page["cursor"] == start + 1, "one big commit comes whole"
    page = changes(store, ref, page["cursor"], dataset="Default", limit=2)
    assert len(page["events"]) == 1 and page["cursor"] == project.revision
    everything = changes(store, ref, start)
    assert len(everything["events"]) == 6 and {e["dataset"] for e in everything["events"]} == {"Default"}
    with pytest.raises(BadRequest):
        changes(store, ref, start, query="labels.cat > 0")
    store.close()


def test_torch_stream_follows_new_annotations(editor: Project) -> None:
    """``to_pytorch(iterable=True, follow=True)``: the view, then what is committed after it."""
    editor.create_dataset("Default")
    editor.upload("Default", data=png(), filename="old.png", instances=[box(1, 1, 9, 9)])
    stream = editor.dataset("Default").to_pytorch(
        iterable=True, shuffle=False, follow=True, follow_options={"idle_timeout": 3.0, "wait": 0.5}
    )

    def annotate() -> None:
        time.sleep(0.5)
        made = editor.upload(
            "Default", data=png(color=(9, 9, 9)), filename="new.png", instances=[box(2, 2, 8, 8, "dog")]
        )
        editor.write_instances(made["id"], [box(3, 3, 7, 7, "cat")])

    writer = threading.Thread(target=annotate)
    writer.start()
    seen = [(s["file"]["name"], s["labels"]) for s in stream]
    writer.join()
    assert seen == [("old.png", ["cat"]), ("new.png", ["dog"]), ("new.png", ["dog", "cat"])]
