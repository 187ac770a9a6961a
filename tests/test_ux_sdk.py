"""A newcomer's surprises, through the SDK on both transports: stores are never created by
opening them, hosts without a scheme are servers, typos get suggestions, exports that fail
leave nothing behind, YOLO exports keep the split, a missing extra names its pip line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

import annostream
from annostream import InvalidInput, NotFound, Project, QueryError
from annostream.client.transports import EmbeddedTransport
from annostream.service.datasets import get_dataset, slice_ids
from annostream.service.projects import LOCAL, authorize
from annostream.store import Store
from tests.conftest import Source
from tests.revhelpers import box, new_project, png


@pytest.fixture(params=["http", "embedded"])
def writable(request: pytest.FixtureRequest, server_store: tuple[str, Path]) -> Project:
    url, store_dir = server_store
    return new_project(request.param, url, store_dir, prefix="ux")


def test_opening_a_folder_without_a_store_names_the_nearest_and_creates_nothing(
    source: Source, tmp_path: Path
) -> None:
    parent = tmp_path / "demo-data"
    (parent / "source").mkdir(parents=True)
    store = parent / "store"
    EmbeddedTransport(store, create=True).create_project("p", None, False)
    for attempt in (lambda: Project("p", host=f"file://{parent}"), lambda: annostream.open(parent)):
        with pytest.raises(NotFound, match=f"nearest store below it is {store}"):
            attempt()
    assert not (parent / "annostream.db").exists() and not (parent / "blobs").exists()
    empty = tmp_path / "typo"
    with pytest.raises(NotFound, match="annostream init --data"):
        Project("p", host=f"file://{empty}")
    assert not empty.exists(), "opening must not create the folder either"


def test_a_host_without_a_scheme_is_a_server_never_a_folder(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    netloc = urlparse(source.url).netloc  # 127.0.0.1:PORT
    project = Project("coco-dataset", source.viewer["client_id"], source.viewer["client_secret"], host=netloc)
    assert len(project.dataset("Default")) == len(source.coco["images"])
    assert project.transport.host == source.url  # type: ignore[attr-defined]
    assert list(tmp_path.iterdir()) == [], "no folder named after the host"
    with pytest.raises(ValueError, match="file://demo-data/store"):
        Project("coco-dataset", host="demo-data/store")


def test_unknown_file_field_and_dataset_get_did_you_mean(project: Project) -> None:
    ds = project.dataset("Default")
    with pytest.raises(QueryError, match="did you mean 'width'") as caught:
        ds.slice("file.widht > 0").count()
    assert "file.metadata.widht" in caught.value.message
    with pytest.raises(NotFound, match="did you mean 'Default'"):
        project.dataset("Defualt")


def test_diffgram_dialect_keeps_the_metadata_fallback(
    writable: Project, server_store: tuple[str, Path]
) -> None:
    writable.upload("Default", data=png(), filename="a.png", metadata={"split": "val"})
    writable.upload("Default", data=png(), filename="b.png", metadata={"split": "train"})
    store = Store.open(server_store[1], create=False)
    try:
        ds = get_dataset(store, authorize(store, LOCAL, writable.string_id, "viewer"), "Default")
        ids, _ = slice_ids(store, ds, "file.split = val", dialect="diffgram")
        assert len(ids) == 1
        with pytest.raises(QueryError, match=r"file\.metadata\.split"):
            slice_ids(store, ds, "file.split = val")
    finally:
        store.close()
    assert len(writable.dataset("Default").slice('file.metadata.split = "val"')) == 1


def test_yolo_export_places_files_by_split(writable: Project, tmp_path: Path) -> None:
    for i, split in enumerate(["train", "train", "val", None]):
        writable.upload(
            "Default",
            data=png(40 + i, 30),
            filename=f"f{i}.png",
            instances=[box(1, 1, 10, 10)],
            metadata={"split": split} if split else {},
        )
    manifest = writable.dataset("Default").export(tmp_path / "y", format="yolo")
    assert manifest["unsplit"] == 1
    assert sorted(p.name for p in (tmp_path / "y" / "images" / "train").iterdir()) == ["f0.png", "f1.png"]
    assert [p.name for p in (tmp_path / "y" / "images" / "val").iterdir()] == ["f2.png"]
    assert (tmp_path / "y" / "labels" / "val" / "f2.txt").read_text().startswith("0 ")
    data = yaml.safe_load((tmp_path / "y" / "data.yaml").read_text())
    assert (data["train"], data["val"]) == ("images/train", "images/val")
    back = writable.import_format("yolo", tmp_path / "y", dataset="Back")
    assert back["files"] == 3  # the two split folders that data.yaml names
    splits = sorted(s["file"]["metadata"]["split"] for s in writable.dataset("Back"))
    assert splits == ["train", "train", "val"]


def test_a_failed_export_removes_only_what_it_created(project: Project, tmp_path: Path) -> None:
    ds = project.dataset("Default")
    with pytest.raises(InvalidInput):
        ds.export(tmp_path / "new" / "deeper", format="nope")
    assert not (tmp_path / "new").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(InvalidInput):
        ds.export(mine, format="nope")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_a_missing_extra_names_its_pip_line(source: Source) -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from annostream import Project\n"
        f"ds = Project('coco-dataset', host='file://{source.store_dir}').dataset('Default')\n"
        "try:\n    ds.to_pytorch()\nexcept ImportError as exc:\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "pip install 'annostream[torch]'" in done.stdout, done.stdout + done.stderr
    from annostream.extras import MissingExtra
    from annostream.store.db import create_db_engine

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "psycopg", None)  # as if the extra were not installed
        with pytest.raises(MissingExtra, match=r"pip install 'annostream\[postgres\]'"):
            create_db_engine("postgresql://nobody@127.0.0.1:1/none")
