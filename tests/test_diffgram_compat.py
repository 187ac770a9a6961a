"""Diffgram's own SDK (``diffgram==0.15.0``, unchanged) streams from our server over loopback.

Everything the SDK hands back is compared with what our SDK gives for the same files.
"""

from __future__ import annotations

import importlib.util
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from annostream import Project
from annostream.client.transports import EmbeddedTransport
from annostream.server import signing
from tests.conftest import Source

diffgram = pytest.importorskip("diffgram")
torch = pytest.importorskip("torch")

QUERY = "labels.cat > 0 or labels.dog >= 2"


@pytest.fixture(autouse=True)
def _quiet() -> None:
    """The SDK sends ``None:None`` Basic auth (a DeprecationWarning) and leaks thread pools."""
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", ResourceWarning)


@pytest.fixture(scope="module")
def dg(source: Source) -> Any:
    """The SDK with a viewer key (Diffgram would demand Editor), host given with a trailing
    slash so that every request path starts with ``//``."""
    return diffgram.Project(
        project_string_id="coco-dataset",
        client_id=source.viewer["client_id"],
        client_secret=source.viewer["client_secret"],
        host=source.url + "/",
    )


@pytest.fixture(scope="module")
def ours(source: Source) -> Project:
    return Project(
        "coco-dataset", source.viewer["client_id"], source.viewer["client_secret"], host=source.url
    )


def _detection_target(sample: dict[str, Any]) -> dict[str, Any]:
    """A torchvision-style detection target built only from the SDK's sample dict."""
    image = torch.from_numpy(sample["image"]).permute(2, 0, 1)
    boxes = torch.stack(
        [sample["x_min_list"], sample["y_min_list"], sample["x_max_list"], sample["y_max_list"]], dim=1
    )
    box_labels = [i["label_file"]["id"] for i in sample["raw_instance_list"] if i["type"] == "box"]
    return {
        "image": image,
        "file_id": sample["diffgram_file"].id,
        "target": {"boxes": boxes, "labels": torch.tensor(box_labels, dtype=torch.int64)},
    }


def _our_target(sample: dict[str, Any]) -> dict[str, Any]:
    boxes = [i for i in sample["instances"] if i["type"] == "box"]
    return {
        "image": torch.from_numpy(np.array(sample["image"].convert("RGB"))).permute(2, 0, 1),
        "file_id": sample["file"]["id"],
        "target": {
            "boxes": torch.tensor([b["bbox"] for b in boxes], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([b["label_id"] for b in boxes], dtype=torch.int64),
        },
    }


def test_project_startup_and_labels(dg: Any, ours: Project) -> None:
    assert dg.default_directory.nickname == "Default"
    assert dg.name_to_file_id == dict(ours.labels)
    dg.name_to_file_id = None
    dg.get_label_file_dict()
    assert dg.name_to_file_id == dict(ours.labels)
    assert dg.get_default_label_schema()["is_default"] is True
    assert dg.get_label("dog").id == ours.labels["dog"]
    assert {lab["label"]["name"]: lab["id"] for lab in dg.get_label_list()} == dict(ours.labels)
    assert dg.get_attributes() == []
    assert dg.file.file_list_exists(dg.default_directory.file_id_list) is True
    assert dg.file.file_list_exists([10**9]) is False


def test_length_and_item_7(dg: Any, ours: Project, source: Source) -> None:
    directory = dg.directory.get(name="Default")
    ds = ours.dataset("Default")
    assert len(directory) == len(ds) == len(source.coco["images"])
    assert directory.file_id_list == ds.ids.tolist()
    got, want = directory[7], ds[7]
    assert got["diffgram_file"].id == want["file"]["id"]
    assert got["diffgram_file"].original_filename == want["file"]["name"]
    assert np.array_equal(got["image"], np.asarray(want["image"].convert("RGB")))
    spatial = [i for i in want["instances"] if i["type"] != "global"]
    assert got["label_name_list"] == [i["label"] for i in spatial]
    assert got["label_id_list"] == [i["label_id"] for i in spatial]
    boxes = [i["bbox"] for i in want["instances"] if i["type"] == "box"]
    assert got["x_min_list"] == [b[0] for b in boxes] and got["y_max_list"] == [b[3] for b in boxes]


def test_iteration_visits_every_file_in_order(dg: Any, ours: Project) -> None:
    directory = dg.directory.get(name="Default")
    names = [s["diffgram_file"].original_filename for s in directory]
    assert names == [s["file"]["name"] for s in ours.dataset("Default")]


def test_slice_uses_our_query_language(dg: Any, ours: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("tensorflow") is None:
        # slice() imports the SDK's TF dataset module, which needs `import tensorflow` to
        # succeed but uses nothing from it on this path; an empty module stands in for it.
        monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    sliced = dg.directory.get(name="Default").slice(QUERY)
    want = ours.dataset("Default").slice(QUERY)
    assert 0 < len(sliced) == len(want) < len(ours.dataset("Default"))
    assert sliced.file_id_list == want.ids.tolist()
    first = sliced[0]
    assert "cat" in first["label_name_list"] or first["label_name_list"].count("dog") >= 2
    with pytest.raises(Exception, match="bad_query"):
        dg.directory.slice("labels.cat >")


def test_to_pytorch_equals_our_samples(dg: Any, ours: Project) -> None:
    directory = dg.directory.get(name="Default")
    dataset = directory.to_pytorch(transform=_detection_target)
    ds = ours.dataset("Default")
    assert len(dataset) == len(ds)
    for i, want in enumerate(ds):
        got, expected = dataset[torch.tensor(i)], _our_target(want)
        assert got["file_id"] == expected["file_id"]
        assert torch.equal(got["image"], expected["image"])
        assert got["target"]["boxes"].dtype == torch.float32
        torch.testing.assert_close(got["target"]["boxes"], expected["target"]["boxes"], rtol=0, atol=1e-4)
        assert torch.equal(got["target"]["labels"], expected["target"]["labels"])


def test_polygon_masks_and_file_by_id(dg: Any, ours: Project) -> None:
    ds = ours.dataset("Default")
    with_polygon = next(s for s in ds if any(i["type"] == "polygon" for i in s["instances"]))
    file_id = with_polygon["file"]["id"]
    sample = dg.directory.get(name="Default").to_pytorch()[ds.ids.tolist().index(file_id)]
    polygons = [i for i in sample["raw_instance_list"] if i["type"] == "polygon"]
    want = [i for i in with_polygon["instances"] if i["type"] == "polygon"]
    assert [[(p["x"], p["y"]) for p in i["points"]] for i in polygons] == [
        [tuple(p) for p in i["geometry"]["points"]] for i in want
    ]
    f = dg.file.get_by_id(file_id)
    assert (f.id, f.original_filename, f.image["width"]) == (
        file_id,
        with_polygon["file"]["name"],
        with_polygon["file"]["width"],
    )


def test_directory_list(dg: Any) -> None:
    listed = dg.directory.get_directory_list()
    assert [d.nickname for d in listed] == ["Default"]
    assert len(listed[0]) == len(dg.default_directory)


def test_private_project_refuses_the_sdk_without_keys(source: Source) -> None:
    with pytest.raises(Exception, match="401"):
        diffgram.Project(project_string_id="coco-dataset", host=source.url)
    with pytest.raises(Exception, match="401"):
        diffgram.Project(
            project_string_id="coco-dataset", client_id="as_nobody", client_secret="wrong", host=source.url
        )


@pytest.fixture(scope="module")
def small(server_store: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A public project and a private one, each with a "Default" dataset of three images."""
    url, store_dir = server_store
    local = EmbeddedTransport(store_dir)
    keys = {"admin": local.create_project("dg-upload", None, False)["admin_key"]}
    local.create_project("dg-open", None, True)
    images = tmp_path_factory.mktemp("dg-images")
    for project in ("dg-open", "dg-upload"):
        for label in ("cat", "dog"):
            local.create_label(project, label, None)
        for n in range(3):
            path = images / f"{project}-{n}.png"
            Image.new("RGB", (32 + n, 24), (n * 40, 90, 200)).save(path)
            local.upload_file(
                project,
                "Default",
                path.name,
                path.read_bytes(),
                [
                    {
                        "type": "box",
                        "label": "cat",
                        "geometry": {"x_min": 1, "y_min": 2, "x_max": 10 + n, "y_max": 12},
                    }
                ],
                {},
            )
    keys["viewer"] = local.create_key("dg-upload", "viewer")
    return {"url": url, "store_dir": store_dir, "keys": keys, "images": images}


def test_public_project_needs_no_credentials(small: dict[str, Any]) -> None:
    dg = diffgram.Project(project_string_id="dg-open", host=small["url"])
    directory = dg.directory.get(name="Default")
    assert len(directory) == 3
    sample = directory.to_pytorch()[2]
    assert sample["image"].shape == (24, 34, 3)
    assert sample["label_name_list"] == ["cat"] and sample["x_max_list"].tolist() == [12.0]


def test_from_local_lands_a_file_with_its_instances(small: dict[str, Any]) -> None:
    admin = small["keys"]["admin"]
    dg = diffgram.Project(
        project_string_id="dg-upload",
        client_id=admin["client_id"],
        client_secret=admin["client_secret"],
        host=small["url"],
    )
    path = small["images"] / "upload.png"
    Image.new("RGB", (40, 30), (10, 20, 30)).save(path)
    made = dg.file.from_local(
        str(path),
        instance_list=[
            {"type": "box", "name": "dog", "x_min": 3, "y_min": 4, "x_max": 20, "y_max": 25},
            {
                "type": "polygon",
                "name": "cat",
                "points": [{"x": 1, "y": 1}, {"x": 9, "y": 1}, {"x": 9, "y": 8}],
            },
            {"type": "tag", "name": "cat"},
        ],
    )
    ours = Project("dg-upload", admin["client_id"], admin["client_secret"], host=small["url"])
    sample = ours.dataset("Default").fetch([made.id])[0]
    assert sample["file"]["name"] == "upload.png"
    assert [(i["type"], i["label"]) for i in sample["instances"]] == [
        ("box", "dog"),
        ("polygon", "cat"),
        ("tag", "cat"),
    ]
    assert sample["instances"][0]["bbox"] == [3, 4, 20, 25]
    assert all(i["machine_made"] for i in sample["instances"])
    again = dg.directory.get(name="Default")
    assert made.id in again.file_id_list
    with pytest.raises(Exception, match="label_file_id"):
        dg.file.from_local(str(path), instance_list=[{"type": "tag", "label_file_id": 1}])


def test_viewer_key_streams_but_cannot_upload(small: dict[str, Any]) -> None:
    viewer = small["keys"]["viewer"]
    dg = diffgram.Project(
        project_string_id="dg-upload",
        client_id=viewer["client_id"],
        client_secret=viewer["client_secret"],
        host=small["url"],
    )
    assert dg.directory.get(name="Default")[0]["label_name_list"] == ["cat"]
    with pytest.raises(Exception, match="Invalid Permission"):
        dg.file.from_local(str(small["images"] / "dg-upload-0.png"))


def test_signed_image_urls_expire_and_resist_tampering(small: dict[str, Any]) -> None:
    url, viewer = small["url"], small["keys"]["viewer"]
    auth = (viewer["client_id"], viewer["client_secret"])
    file_id = httpx.post(
        f"{url}/api/project/dg-upload/user/legacy/file/list",
        auth=auth,
        json={"metadata": {"file_view_mode": "ids_only", "directory_id": None}},
    ).json()["file_list"][0]
    served = httpx.post(f"{url}/api/project/dg-upload/file/{file_id}/annotation/list", auth=auth).json()
    signed = served["file_serialized"]["image"]["url_signed"]
    assert viewer["client_secret"] not in signed and "expires=" in signed
    assert httpx.get(signed, follow_redirects=True).status_code == 200
    base, _, query = signed.partition("?")
    params = dict(p.split("=") for p in query.split("&"))
    sha = base.split("/")[-2]
    forged_sig = params["sig"][:-1] + ("0" if params["sig"][-1] != "0" else "1")
    assert httpx.get(base, params={**params, "sig": forged_sig}).status_code == 403
    assert httpx.get(base, params={**params, "expires": int(params["expires"]) + 60}).status_code == 403
    assert httpx.get(base.replace("/dg-upload/", "/dg-open/"), params=params).status_code == 403
    secret = signing.load_secret(small["store_dir"])
    expires, sig = signing.sign(secret, "dg-upload", sha, ttl_s=-1)
    assert httpx.get(base, params={"expires": expires, "sig": sig}).status_code == 403
    expires, sig = signing.sign(secret, "dg-upload", sha, ttl_s=60)
    assert httpx.get(base, params={"expires": expires, "sig": sig}, follow_redirects=True).status_code == 200


def test_signing_secret_is_shared_through_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(signing.SECRET_ENV, raising=False)
    first, second = signing.load_secret(tmp_path), signing.load_secret(tmp_path)
    assert first == second and len(first) == 32
    assert (tmp_path / signing.SECRET_FILE).stat().st_mode & 0o777 == 0o600
    expires, sig = signing.sign(first, "p", "ab" * 32, ttl_s=60, now=1000)
    assert signing.verify(second, "p", "ab" * 32, expires, sig, now=1000)
    assert not signing.verify(second, "p", "ab" * 32, expires, sig, now=expires + 1)
    monkeypatch.setenv(signing.SECRET_ENV, "11" * 32)
    assert signing.load_secret(tmp_path) == bytes.fromhex("11" * 32)


def test_from_local_video_with_frame_packet_map(small: dict[str, Any]) -> None:
    """The SDK's video upload: frame_packet_map instances land on their frames, ``number`` as the track."""
    from tests.videos import make_video, read_number

    admin = small["keys"]["admin"]
    dg = diffgram.Project(
        project_string_id="dg-upload",
        client_id=admin["client_id"],
        client_secret=admin["client_secret"],
        host=small["url"],
    )
    path = small["images"] / "drive.mp4"
    path.write_bytes(make_video(12, "mp4"))
    made = dg.file.from_local(
        str(path),
        frame_packet_map={
            0: [
                {
                    "type": "box",
                    "name": "cat",
                    "x_min": 1,
                    "y_min": 2,
                    "x_max": 9,
                    "y_max": 9,
                    "number": 4,
                    "frame_number": 0,
                }
            ],
            8: [
                {
                    "type": "box",
                    "name": "cat",
                    "x_min": 5,
                    "y_min": 2,
                    "x_max": 13,
                    "y_max": 9,
                    "number": 4,
                    "frame_number": 8,
                },
                {"type": "tag", "name": "dog", "frame_number": 8},
            ],
        },
    )
    ours = Project("dg-upload", admin["client_id"], admin["client_secret"], host=small["url"])
    item = ours.dataset("Default").fetch([made.id])[0]
    assert (item["file"]["type"], item["file"]["frame_count"]) == ("video", 12)
    assert sorted((i["frame_number"], i["type"], i["track_id"]) for i in item["instances"]) == [
        (0, "box", 4),
        (8, "box", 4),
        (8, "tag", None),
    ]
    frames = (
        ours.dataset("Default").slice(f"file.id = {made.id}").frames("tracks.count > 0", interpolate=True)
    )
    assert [s["frame_number"] for s in frames] == [0, 8]
    assert read_number(frames[1]["image"]) == 8
    served = httpx.post(
        f"{small['url']}/api/project/dg-upload/file/{made.id}/annotation/list",
        auth=(admin["client_id"], admin["client_secret"]),
    ).json()["file_serialized"]
    assert served["video"]["frame_count"] == 12 and served["image"] is None
    assert sorted(i["number"] or 0 for i in served["instance_list"]) == [0, 4, 4]
    with pytest.raises(Exception, match="past the end"):
        dg.file.from_local(
            str(path), frame_packet_map={12: [{"type": "tag", "name": "dog", "frame_number": 12}]}
        )
