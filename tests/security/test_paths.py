"""Names never become paths outside their folder: uploads, local exports in every format,
the export zip, and dataset names (issue 13)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import update

from annostream.client.transports import EmbeddedTransport
from annostream.errors import InvalidInput
from annostream.formats import FORMATS
from annostream.paths import confine, safe_name
from annostream.store.tables import files
from tests.security.conftest import World, basic


def png(size: tuple[int, int] = (8, 6)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("a/./b//c.png", "a/b/c.png"),
        ("dir\\win.jpg", "dir/win.jpg"),
        ("./x.jpg", "x.jpg"),
        ("ünï/名.png", "ünï/名.png"),
    ],
)
def test_safe_name_keeps_names_inside(raw: str, clean: str) -> None:
    assert safe_name(raw) == clean


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "..",
        "../..",
        "/",
        "\x00",
        "./.",
        "../../etc/passwd",
        "/abs/x.jpg",
        "a/./b/../c.png",
        "..\\..\\win.jpg",
        "C:\\x\\y.jpg",
        "ok\x00\r\n.jpg",
    ],
)
def test_safe_name_refuses_names_that_leave_or_name_nothing(raw: str) -> None:
    with pytest.raises(InvalidInput):
        safe_name(raw)


def test_confine_refuses_leaving_and_symlinked_folders(tmp_path: Path) -> None:
    root = tmp_path / "out"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    assert confine(root, "a/b.txt") == root.resolve() / "a" / "b.txt"
    for bad in ("../x", "/etc/passwd", "link/x", "a/../../x"):
        with pytest.raises(InvalidInput):
            confine(root, bad)


def test_upload_refuses_a_name_that_leaves_its_folder(world: World) -> None:
    for name in ("../../evil.png", "/etc/evil.png", "../.."):
        with world.client() as http:
            r = http.post(
                "/api/v2/projects/priv/datasets/Default/files",
                headers=basic(world.keys["priv:editor"]),
                files={"file": (name, png(), "image/png")},
            )
        assert r.status_code == 422 and r.json()["error"]["detail"]["field"] == "file", r.text


@pytest.fixture()
def hostile_store(tmp_path: Path) -> tuple[EmbeddedTransport, Path]:
    """A store whose file names were saved before names were sanitised (as old data may be)."""
    store_dir = tmp_path / "store"
    local = EmbeddedTransport(store_dir)
    local.create_project("p", None, False)
    local.create_label("p", "cat", None)
    for i, name in enumerate(["a.png", "b.png", "c.png"]):
        local.upload_file(
            "p",
            "Default",
            name,
            png((8 + i, 6)),
            [{"type": "box", "label": "cat", "geometry": {"x_min": 1, "y_min": 1, "x_max": 4, "y_max": 4}}],
            {},
        )
    hostile = ["../../escaped.png", "/tmp/absolute-escape.png", "sub/../../../up.png"]
    with local.store.engine.begin() as conn:
        for name, old in zip(hostile, ["a.png", "b.png", "c.png"], strict=True):
            conn.execute(update(files).where(files.c.original_filename == old).values(original_filename=name))
    return local, tmp_path


@pytest.mark.parametrize("fmt", FORMATS)
def test_local_export_writes_only_inside_its_folder(
    hostile_store: tuple[EmbeddedTransport, Path], fmt: str
) -> None:
    local, tmp_path = hostile_store
    out = tmp_path / "deep" / "out"
    before = {p for p in tmp_path.rglob("*") if not str(p).startswith(str(out))}
    manifest = local.export("p", "Default", fmt, out, None, None, True)
    assert manifest["files"] == 3
    after = {p for p in tmp_path.rglob("*") if not str(p).startswith(str(out))}
    assert after - before == {tmp_path / "deep"}
    written = [p for p in out.rglob("*") if p.is_file()]
    assert written and all(out.resolve() in p.resolve().parents for p in written)
    assert not Path("/tmp/absolute-escape.png").exists()


def test_export_zip_has_no_leaving_entries(world: World, tmp_path: Path) -> None:
    with world.client() as http:
        r = http.post(
            "/api/v2/projects/priv/datasets/zipnames/files",
            headers=basic(world.keys["priv:editor"]),
            files={"file": ("evil.png", png(), "image/png")},
        )
        assert r.status_code == 201, r.text
        file_id = r.json()["id"]
        # a name stored before names were checked (as old data may hold)
        with EmbeddedTransport(world.store_dir).store.engine.begin() as conn:
            conn.execute(
                update(files).where(files.c.id == file_id).values(original_filename="../../x/../../evil.png")
            )
        for fmt in FORMATS:
            r = http.get(
                "/api/v2/projects/priv/datasets/zipnames/export",
                params={"format": fmt},
                headers=basic(world.keys["priv:viewer"]),
            )
            assert r.status_code == 200, r.text
            names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
            assert names and all(safe_name(n) == n for n in names), names


@pytest.mark.parametrize(
    "name", ["../x", "a/b", "a\r\nb", "x\x00y", "\x1b[31m", "..", "a\\b", " pad", "x" * 201]
)
def test_dataset_names_are_validated_at_creation(world: World, name: str) -> None:
    with world.client() as http:
        r = http.post(
            "/api/v2/projects/priv/datasets", json={"name": name}, headers=basic(world.keys["priv:editor"])
        )
        assert r.status_code == 422, r.text
        assert r.json()["error"]["detail"]["field"] == "name"


def test_dataset_made_by_an_upload_is_validated_too(world: World) -> None:
    with world.client() as http:
        r = http.post(
            "/api/v2/projects/priv/datasets/a%0Ab/files",
            headers=basic(world.keys["priv:editor"]),
            files={"file": ("ok.png", png(), "image/png")},
        )
        assert r.status_code == 422, r.text
        assert r.json()["error"]["detail"]["field"] == "dataset"


def test_the_blob_cache_builds_paths_only_from_sha256(tmp_path: Path) -> None:
    from annostream.client.cache import DiskBlobCache

    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    cache = DiskBlobCache(tmp_path / "cache" / "blobs", 1 << 20)
    hostile = "../../victim"
    assert cache.get(hostile) is None
    assert victim.read_bytes() == b"keep me"  # not read, not unlinked as corrupt
    cache.put("../../written", b"data")
    assert not (tmp_path / "written").exists()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [victim]
