"""Revisions: pinned views, as_of, tags, and garbage collection that spares tagged history."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from annostream import Conflict, InvalidInput, NotFound, Project
from annostream.cli import app
from annostream.client.transports import EmbeddedTransport
from annostream.service.projects import LOCAL, authorize
from annostream.service.revisions import collect_garbage, parse_older_than
from annostream.service.staging import stage_blobs
from annostream.store import Store
from tests.revhelpers import box, fresh, new_project, png, sample_bytes, view_bytes

TRANSPORTS = ["http", "embedded"]


@pytest.fixture(params=TRANSPORTS)
def editor(request: pytest.FixtureRequest, server_store: tuple[str, Path], server_client: Any) -> Project:
    """A fresh project as its admin: over HTTP to the app in this process, or embedded."""
    return new_project(request.param, server_client, server_store[1])


def _seed(project: Project, n: int = 5) -> list[int]:
    ids = []
    for i in range(n):
        made = project.upload(
            "Default",
            data=png(color=(i, 2 * i, 3 * i)),
            filename=f"f{i}.png",
            metadata={"i": i},
            instances=[box(1, 1, 10 + i, 12), box(2, 3, 20, 30, "dog")],
        )
        ids.append(made["id"])
    return ids


def _mutate(project: Project, ids: list[int]) -> None:
    """Added files, edited and deleted instances, a file taken out of the dataset."""
    project.upload("Default", data=png(color=(200, 1, 1)), filename="late.png", instances=[box(0, 0, 5, 5)])
    project.write_instances(ids[0], [box(3, 3, 9, 9, "dog", attributes={"weather": "rain"})], replace=True)
    victim = project.dataset("Default")[1]["instances"][0]["id"]
    project.delete_instance(victim)
    project.write_instances(ids[2], [box(4, 4, 8, 8)])
    project.remove_file("Default", ids[3])


def test_pinned_view_is_identical_after_writes(editor: Project) -> None:
    ids = _seed(editor)
    pinned = editor.dataset("Default").snapshot()
    before = view_bytes(pinned)
    assert len(before) == 5
    _mutate(editor, ids)
    editor.cache.clear()
    assert view_bytes(pinned) == before, "the same pinned object, cache cleared"
    again = fresh(editor).dataset("Default").as_of(pinned.revision)
    assert view_bytes(again) == before, "a cold client at the same revision"
    head = fresh(editor).dataset("Default")
    assert head.revision > pinned.revision and len(head) == 5
    assert view_bytes(head) != before


def test_as_of_reproduces_every_past_revision_exactly(editor: Project) -> None:
    ids = _seed(editor, 3)
    history: dict[int, list[bytes]] = {}
    writes = [
        lambda: editor.upload(
            "Default", data=png(color=(9, 9, 9)), filename="x.png", instances=[box(1, 1, 2, 2)]
        ),
        lambda: editor.write_instances(ids[0], [box(5, 5, 6, 6, "dog")], replace=True),
        lambda: editor.write_instances(ids[1], [box(7, 7, 8, 8)]),
        lambda: editor.remove_file("Default", ids[2]),
        lambda: editor.write_instances(ids[0], [], replace=True),
    ]
    for write in [lambda: None, *writes]:
        write()
        head = fresh(editor).dataset("Default")
        history[head.revision] = view_bytes(head)
    assert len(history) == len(writes) + 1
    reader = fresh(editor)
    for rev, expected in history.items():
        assert view_bytes(reader.dataset("Default").as_of(rev)) == expected, f"revision {rev}"
    with pytest.raises(NotFound, match="does not exist"):
        list(reader.dataset("Default").as_of(10_000))


def test_slice_snapshot_keeps_its_slice(editor: Project) -> None:
    ids = _seed(editor, 4)
    cats = editor.dataset("Default").slice("labels.cat > 0").snapshot()
    before = view_bytes(cats)
    editor.write_instances(ids[0], [box(1, 1, 2, 2, "dog")], replace=True)
    editor.upload("Default", data=png(color=(1, 1, 1)), filename="cat2.png", instances=[box(1, 1, 3, 3)])
    assert view_bytes(cats) == before and len(cats) == 4
    assert len(fresh(editor).dataset("Default").slice("labels.cat > 0")) == 4


def test_tags_name_revisions(editor: Project) -> None:
    _seed(editor, 2)
    v1 = editor.tag("v1")
    assert v1["rev"] == editor.revision
    expected = view_bytes(editor.dataset("Default"))
    editor.upload("Default", data=png(color=(5, 5, 5)), filename="more.png")
    editor.tag("first", rev=1)
    assert [t["name"] for t in editor.tags()] == ["first", "v1"]
    assert view_bytes(fresh(editor).dataset("Default").as_of("v1")) == expected
    assert fresh(editor).dataset("Default").as_of("v1").revision == v1["rev"]
    with pytest.raises(Conflict, match="already points at"):
        editor.tag("v1", rev=1)
    with pytest.raises(NotFound, match="tag 'v2'"):
        editor.dataset("Default").as_of("v2")
    with pytest.raises(InvalidInput, match="not a tag name"):
        editor.tag("2024")
    with pytest.raises(NotFound):
        editor.tag("future", rev=10_000)
    editor.delete_tag("first")
    assert [t["name"] for t in editor.tags()] == ["v1"]


def _invariant(sample_list: list[dict]) -> None:
    """Every file of the concurrency test has exactly 3 instances, all with one label."""
    for s in sample_list:
        labels = [i["label"] for i in s["instances"]]
        assert len(labels) == 3 and len(set(labels)) == 1, (s["file"]["name"], labels)


def test_one_writer_two_pinned_readers(server_store: tuple[str, Path]) -> None:
    """Readers never see half a commit; every pinned re-read is identical; nothing lost."""
    url, store_dir = server_store
    writer = new_project("embedded", url, store_dir, prefix="conc")
    writer.create_dataset("Default")
    twin = _http_twin(writer, url, store_dir)
    readers = [fresh(twin), fresh(twin)]
    n_commits = 24
    files_at: dict[int, int] = {}
    uploaded: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def write() -> None:
        try:
            for i in range(n_commits):
                if i % 3 == 2:
                    made = writer.write_instances(
                        uploaded[i // 3], [box(1, 1, 5, 5, "dog")] * 3, replace=True
                    )
                else:
                    made = writer.upload(
                        "Default",
                        data=png(color=(i, 0, 0)),
                        filename=f"c{i}.png",
                        instances=[box(1, 1, 9, 9)] * 3,
                    )
                    uploaded.append(made["id"])
                files_at[made["revision"]] = len(uploaded)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            done.set()

    seen: list[list[tuple[int, int]]] = [[], []]

    def read(k: int) -> None:
        try:
            while not done.is_set() or len(seen[k]) < 3:
                pinned = readers[k].dataset("Default").snapshot()
                first = list(pinned.with_options(decode=None))
                _invariant(first)
                readers[k].cache.clear()
                assert [sample_bytes(s) for s in first] == view_bytes(pinned)
                seen[k].append((pinned.revision, len(first)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    for rev, count in (pair for reader_seen in seen for pair in reader_seen):
        known = [r for r in files_at if r <= rev]
        assert count == (files_at[max(known)] if known else 0), (rev, count)
    head = fresh(writer).dataset("Default")
    assert len(head) == len(uploaded) == n_commits - n_commits // 3
    _invariant(list(head.with_options(decode=None)))


def _http_twin(project: Project, url: str, store_dir: Path) -> Project:
    key = EmbeddedTransport(store_dir).create_key(project.string_id, "viewer")
    return Project(project.string_id, key["client_id"], key["client_secret"], host=url)


# --- garbage collection ---------------------------------------------------------------


def _history(tmp_path: Path) -> tuple[Project, Path, dict[str, int], dict[int, list[bytes]]]:
    store_dir = tmp_path / "store"
    project = new_project("embedded", "", store_dir, prefix="gc")
    ids = _seed(project, 3)
    revs: dict[str, int] = {}
    views: dict[int, list[bytes]] = {}

    def mark(name: str) -> None:
        rev = project.revision
        revs[name] = rev
        views[rev] = view_bytes(fresh(project).dataset("Default"))

    mark("seeded")
    project.write_instances(ids[0], [box(1, 1, 4, 4, "dog")], replace=True)
    mark("edited")
    project.tag("v1")
    project.delete_instance(fresh(project).dataset("Default")[1]["instances"][0]["id"])
    project.remove_file("Default", ids[2])
    mark("removed")
    project.write_instances(ids[1], [box(2, 2, 6, 6)], replace=True)
    mark("head")
    return project, store_dir, revs, views


def test_gc_keeps_tagged_revisions_and_the_head(tmp_path: Path) -> None:
    project, store_dir, revs, views = _history(tmp_path)
    store = Store.open(store_dir)
    ref = authorize(store, LOCAL, project.string_id, "viewer")
    orphan = stage_blobs(store, ref, [(png(color=(77, 77, 77)), "orphan")])[0].sha256
    young = collect_garbage(store, revs["head"], project=project.string_id, keep_tags=True, dry_run=True)
    assert young.blobs == 0, "a blob staged moments ago may belong to an import in flight"
    dry = collect_garbage(
        store,
        revs["head"],
        project=project.string_id,
        keep_tags=True,
        dry_run=True,
        staged_grace=timedelta(0),
    )
    assert dry.rows["instances"] > 0 and dry.blobs == 1 and store.blobs.exists(orphan)
    with pytest.raises(Conflict, match="v1"):
        collect_garbage(store, revs["head"], project=project.string_id, keep_tags=False)
    report = collect_garbage(
        store, revs["head"], project=project.string_id, keep_tags=True, staged_grace=timedelta(0)
    )
    assert report.rows == dry.rows and report.blobs == 1 and not store.blobs.exists(orphan)
    assert report.rows["instances"] > 0 and report.rows["file_label_counts"] > 0
    store.close()

    reader = fresh(project)
    assert view_bytes(reader.dataset("Default").as_of("v1")) == views[revs["edited"]]
    assert view_bytes(reader.dataset("Default")) == views[revs["head"]]
    assert view_bytes(reader.dataset("Default").as_of(revs["head"])) == views[revs["head"]]
    with pytest.raises(NotFound, match="garbage collected"):
        list(reader.dataset("Default").as_of(revs["seeded"]))
    with pytest.raises(NotFound, match="garbage collected"):
        reader.tag("late", rev=revs["seeded"])
    again = Store.open(store_dir)
    assert (
        sum(collect_garbage(again, revs["head"], project=project.string_id, keep_tags=True).rows.values())
        == 0
    ), "a second run finds nothing"
    again.close()


def test_gc_cli(tmp_path: Path) -> None:
    project, store_dir, revs, views = _history(tmp_path)
    runner = CliRunner()
    refused = runner.invoke(
        app,
        ["gc", "--data", str(store_dir), "--project", project.string_id, "--older-than", str(revs["head"])],
    )
    assert refused.exit_code == 1 and "tag" in refused.output
    by_age = runner.invoke(app, ["gc", "--data", str(store_dir), "--older-than", "1d", "--keep-tags"])
    assert by_age.exit_code == 0 and "deleted 0 rows" in by_age.output, by_age.output
    ran = runner.invoke(
        app,
        [
            "gc",
            "--data",
            str(store_dir),
            "--project",
            project.string_id,
            "--older-than",
            str(revs["head"]),
            "--keep-tags",
        ],
    )
    assert ran.exit_code == 0, ran.output
    assert "instances" in ran.output
    assert view_bytes(fresh(project).dataset("Default").as_of("v1")) == views[revs["edited"]]
    assert view_bytes(fresh(project).dataset("Default")) == views[revs["head"]]


def test_gc_default_matches_the_cli(tmp_path: Path) -> None:
    """Without keep_tags the service refuses as the CLI does without --keep-tags."""
    project, store_dir, revs, _ = _history(tmp_path)
    store = Store.open(store_dir)
    try:
        with pytest.raises(Conflict, match="v1"):
            collect_garbage(store, revs["head"], project=project.string_id)
    finally:
        store.close()


def test_parse_older_than() -> None:
    assert parse_older_than("42") == 42
    assert parse_older_than("7d").total_seconds() == 7 * 86400  # type: ignore[union-attr]
    assert parse_older_than("30m").total_seconds() == 1800  # type: ignore[union-attr]
    with pytest.raises(InvalidInput):
        parse_older_than("soon")
