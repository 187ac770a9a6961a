"""Every bad input answers a 4xx naming what is wrong, never a 500 (issue 13)."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import orjson
import pytest
from PIL import Image

from annostream.limits import LIMITS
from tests.security.conftest import World, basic

BIG = 2**63
P = "/api/v2/projects/priv"


def png(size: tuple[int, int] = (8, 6)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 200, 10)).save(buf, "PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A small, well-formed PNG declaring ``width`` x ``height`` pixels (a decompression bomb:
    its few compressed bytes would inflate to width * height when decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def _field(r) -> str:  # type: ignore[no-untyped-def]
    body = r.json()["error"]
    return (body.get("detail") or {}).get("field", "")


@pytest.mark.parametrize(
    "method, path, kwargs, field",
    [
        ("GET", f"{P}/datasets/Default/count", {"params": {"as_of": BIG}}, "as_of"),
        ("GET", f"{P}/datasets/Default/count", {"params": {"as_of": -1}}, "as_of"),
        ("GET", f"{P}/datasets/Default", {"params": {"as_of": 2**31}}, "as_of"),  # revisions are int32
        ("GET", f"{P}/datasets/Default/ids", {"params": {"as_of": BIG}}, "as_of"),
        ("GET", f"{P}/labels", {"params": {"as_of": BIG}}, "as_of"),
        ("GET", f"{P}/changes", {"params": {"since": BIG}}, "since"),
        ("GET", f"{P}/changes", {"params": {"since": -1}}, "since"),
        ("POST", f"{P}/items:batch", {"json": {"ids": [BIG]}}, "ids.0"),
        ("POST", f"{P}/items:batch", {"json": {"ids": [-1]}}, "ids.0"),
        ("POST", f"{P}/items:batch", {"json": {"ids": [1], "as_of": BIG}}, "as_of"),
        ("POST", f"{P}/tags", {"json": {"name": "big", "rev": BIG}}, "rev"),
        ("DELETE", f"{P}/datasets/Default/files/{BIG}", {}, "file_id"),
        ("POST", f"{P}/files/{BIG}/instances", {"json": {"instances": []}}, "file_id"),
        ("PUT", f"{P}/files/-3/instances", {"json": {"instances": []}}, "file_id"),
        ("DELETE", f"{P}/instances/{BIG}", {}, "instance_id"),
    ],
)
def test_out_of_range_integers_are_422_naming_the_field(
    world: World, method: str, path: str, kwargs: dict, field: str
) -> None:
    with world.client() as http:
        r = http.request(method, path, headers=basic(world.keys["priv:admin"]), **kwargs)
    assert r.status_code == 422, r.text
    assert _field(r) == field, r.text


@pytest.mark.parametrize(
    "method, path, kwargs",
    [
        ("POST", "/api/project/priv/file/{big}/annotation/list", {}),
        ("POST", "/api/v1/file/view", {"json": {"file_id": BIG, "project_string_id": "priv"}}),
        ("POST", "/api/v1/project/priv/file/exists", {"json": {"file_id_list": [BIG]}}),
        ("POST", "/api/project/priv/user/u/file/list", {"json": {"metadata": {"directory_id": BIG}}}),
        ("POST", "/api/project/priv/user/u/file/list", {"json": {"metadata": {"page": BIG}}}),
        ("GET", "/api/project/priv/labels", {"params": {"schema_id": BIG}}),
        ("GET", "/api/v1/project/priv/labels/view/name_to_file_id", {"params": {"schema_id": -1}}),
    ],
)
def test_diffgram_routes_refuse_out_of_range_integers(
    world: World, method: str, path: str, kwargs: dict
) -> None:
    with world.client() as http:
        r = http.request(method, path.format(big=BIG), headers=basic(world.keys["priv:admin"]), **kwargs)
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]["message"]


def test_diffgram_upload_refuses_a_bad_directory_id(world: World) -> None:
    with world.client() as http:
        for bad in (BIG, "abc", -1, [1]):
            r = http.post(
                "/api/walrus/v1/project/priv/input/from_local",
                headers=basic(world.keys["priv:editor"]),
                files={"file": ("a.png", png(), "image/png")},
                data={"json": orjson.dumps({"directory_id": bad, "instance_list": []}).decode()},
            )
            assert r.status_code == 400, r.text
            assert "directory_id" in r.json()["error"]["message"]


TXT = ("a.txt", b"line\x00", "text/plain")
DG_UPLOAD = "/api/walrus/v1/project/priv/input/from_local"


@pytest.mark.parametrize(
    "method, path, kwargs, status, field",
    [
        ("POST", f"{P}/labels", {"json": {"name": "a\x00b"}}, 422, "name"),
        ("POST", f"{P}/tags", {"json": {"name": "t\x00"}}, 422, "name"),
        ("POST", f"{P}/attribute_groups", {"json": {"name": "g\x00"}}, 422, "name"),
        ("POST", f"{P}/attribute_groups", {"json": {"name": "g", "options": ["o\x00"]}}, 422, "options.0"),
        ("GET", f"{P}/datasets/Default/count", {"params": {"query": 'file.name = "a\x00"'}}, 422, "query"),
        ("GET", f"{P}/changes", {"params": {"dataset": "d\x00"}}, 422, "dataset"),
        ("GET", f"{P}/datasets/a%00b", {}, 422, "dataset"),
        ("GET", f"{P}/tags/a%00b", {}, 422, "name"),
        ("POST", f"{P}/datasets/Default/files", {"files": {"file": TXT}}, 422, "file"),
        ("GET", "/api/project/priv/user/u/working_dir/view", {"params": {"name": "a\x00"}}, 400, "name"),
        (
            "POST",
            "/api/project/priv/user/u/file/list",
            {"json": {"metadata": {"query": 'file.name = "\x00"'}}},
            400,
            "metadata.query",
        ),
        ("POST", DG_UPLOAD, {"files": {"file": TXT}, "data": {"json": "{}"}}, 400, "file"),
    ],
)
def test_nul_in_text_is_refused_naming_the_field(
    world: World, method: str, path: str, kwargs: dict, status: int, field: str
) -> None:
    """PostgreSQL text cannot hold NUL: a name, query, path segment or text file with one was
    a 500 there (stored as is on SQLite); now refused alike on both stacks."""
    with world.client() as http:
        r = http.request(method, path, headers=basic(world.keys["priv:editor"]), **kwargs)
    assert r.status_code == status, r.text
    assert _field(r) == field, r.text


def test_nul_in_instance_attributes_is_refused(world: World) -> None:
    with world.client() as http:
        editor = basic(world.keys["priv:editor"])
        assert http.post(
            f"{P}/attribute_groups", headers=editor, json={"name": "note", "kind": "text"}
        ).status_code in (
            201,
            409,
        )
        r = http.post(
            f"{P}/files/{world.file_ids['priv']}/instances",
            headers=editor,
            json={"instances": [{"type": "global", "attributes": {"note": "x\x00y"}}]},
        )
    assert r.status_code == 422, r.text
    assert _field(r) == "instances.0.attributes", r.text


@pytest.mark.parametrize(
    "packet, field",
    [
        ({"instance_list": [{"type": "tag", "name": "cat", "points": 5}]}, "instance_list[0].points"),
        (
            {"instance_list": [{"type": "polygon", "name": "cat", "points": [1, 2]}]},
            "instance_list[0].points[0]",
        ),
        ({"frame_packet_map": {str(2**31): []}}, f"frame_packet_map[{2**31}]"),
        (
            {"instance_list": [{"type": "tag", "name": "cat", "frame_number": 2**31}]},
            "instances[0].frame_number",
        ),
    ],
)
def test_diffgram_upload_refuses_malformed_instances(world: World, packet: dict, field: str) -> None:
    with world.client() as http:
        r = http.post(
            DG_UPLOAD,
            headers=basic(world.keys["priv:editor"]),
            files={"file": ("a.png", png(), "image/png")},
            data={"json": orjson.dumps(packet).decode()},
        )
    assert r.status_code == 400, r.text
    assert _field(r).startswith(field), r.text


@pytest.mark.parametrize("sig", ["é" * 64, "\u2603", "00" * 32, ""])
def test_signed_blob_urls_refuse_any_forged_signature(world: World, sig: str) -> None:
    with world.client() as http:
        r = http.get(
            f"/api/v2/projects/priv/blobs/{world.shas['priv']}/signed", params={"expires": 2**40, "sig": sig}
        )
    assert r.status_code == 403, r.text


def test_decompression_bombs_are_refused_at_upload(world: World) -> None:
    assert LIMITS.max_image_pixels == Image.MAX_IMAGE_PIXELS  # set explicitly, from the limit
    side_over_twice = int((LIMITS.max_image_pixels * 3) ** 0.5)  # Pillow's own error
    side_just_over = int((LIMITS.max_image_pixels * 1.2) ** 0.5)  # only a warning to Pillow
    with world.client() as http:
        for side in (side_over_twice, side_just_over):
            bomb = png_header_only(side, side)
            assert len(bomb) < 200
            for path, kwargs in (
                (f"{P}/datasets/Default/files", {"files": {"file": ("bomb.png", bomb, "image/png")}}),
                (f"{P}/blobs", {"content": bomb}),
            ):
                method = "PUT" if path.endswith("/blobs") else "POST"
                r = http.request(method, path, headers=basic(world.keys["priv:editor"]), **kwargs)
                assert r.status_code == 413, r.text
                assert "pixels" in r.json()["error"]["message"]


@pytest.mark.parametrize("metadata", ['{"a\\u0000b": 1}', "[1, 2]", '"text"', "7"])
def test_upload_metadata_must_be_an_object_with_clean_keys(world: World, metadata: str) -> None:
    with world.client() as http:
        r = http.post(
            f"{P}/datasets/meta/files",
            headers=basic(world.keys["priv:editor"]),
            files={"file": ("m.png", png(), "image/png")},
            data={"metadata": metadata},
        )
        assert r.status_code == 422, r.text
        assert _field(r) == "metadata"
        # nothing was written: every export of the dataset still works
        r = http.get(
            f"{P}/datasets/meta/export", params={"format": "coco"}, headers=basic(world.keys["priv:viewer"])
        )
        assert r.status_code in (200, 404), r.text


def test_export_of_a_dataset_with_a_non_ascii_name(world: World) -> None:
    name = "ünïcode データ"
    with world.client() as http:
        r = http.post(
            f"{P}/datasets/{name}/files",
            headers=basic(world.keys["priv:editor"]),
            files={"file": ("u.png", png(), "image/png")},
            data={"metadata": '{"split": "val"}'},
        )
        assert r.status_code == 201, r.text
        r = http.get(
            f"{P}/datasets/{name}/export", params={"format": "coco"}, headers=basic(world.keys["priv:viewer"])
        )
        assert r.status_code == 200, r.text
        disposition = r.headers["content-disposition"]
        assert "filename*=UTF-8''priv-%C3%BCn%C3%AFcode%20%E3%83%87%E3%83%BC%E3%82%BF-" in disposition
        assert disposition.isascii()


@pytest.mark.parametrize(
    "header",
    [
        "s3cr3t-token-value",
        "Token s3cr3t-token-value",
        "Basic s3cr3t-token-value",
        "Bearer s3cr3t-token-value",
        "Basic " + "czNjcjN0LXRva2VuLXZhbHVl",
    ],
)
def test_credentials_are_never_echoed(world: World, header: str) -> None:
    with world.client() as http:
        r = http.get(f"{P}/datasets", headers={"Authorization": header})
    assert r.status_code == 401, r.text
    assert "s3cr3t" not in r.text and "czNjcjN0" not in r.text


NUL_BASIC = {"Authorization": "Basic " + base64.b64encode(b"as_a\x00b:secret").decode()}


@pytest.mark.parametrize(
    "method, path, headers, status",
    [
        ("GET", "/api/v2/projects/a%00b", {}, 404),
        ("GET", "/api/v2/projects/a%00b/datasets", {}, 404),
        ("GET", "/api/project/a%00b/labels", {}, 404),
        ("GET", f"{P}", NUL_BASIC, 401),
        ("GET", "/api/v2/projects", NUL_BASIC, 401),
        ("GET", "/api/project/pub/labels", NUL_BASIC, 401),
    ],
)
def test_nul_in_a_project_or_a_key_is_404_or_401(
    world: World, method: str, path: str, headers: dict, status: int
) -> None:
    """No project or key has NUL in its name: found nowhere, never a database error."""
    with world.client() as http:
        r = http.request(method, path, headers=headers)
    assert r.status_code == status, r.text


@pytest.mark.parametrize(
    "path, params, field",
    [
        ("/explore/p/pub/d/a%00b", {}, "dataset"),
        ("/explore/p/pub/d/Default", {"q": 'file.name = "\x00"'}, "q"),
        ("/explore/p/pub/d/Default", {"as_of": str(BIG)}, "as_of"),
        ("/explore/p/pub/d/Default", {"as_of": str(2**31)}, "as_of"),
        ("/explore/p/pub/d/Default", {"after": str(BIG)}, "after"),
        ("/explore/p/pub/changes", {"d": "Default", "since": str(2**31)}, "since"),
        ("/explore/p/pub/changes", {"d": "a\x00"}, "d"),
        (f"/explore/p/pub/f/{BIG}", {}, "file_id"),
        ("/explore/p/pub/thumb/128/a%00b", {}, "sha256"),
        ("/explore/p/pub/blob/a%00b", {}, "sha256"),
    ],
)
def test_explorer_pages_refuse_what_the_api_refuses(
    world: World, path: str, params: dict, field: str
) -> None:
    """The explorer's pages take the API's bounds: NUL and numbers past int64 (ids) or int32
    (revisions) are a 422 naming the argument (they were 500s on PostgreSQL)."""
    with world.client() as http:
        r = http.get(path, params=params)
    assert r.status_code == 422, r.text
    assert field in r.text
