"""Videos: upload and probe, frames decoded on the client, refusals; on both transports."""

from __future__ import annotations

import random
from pathlib import Path

import httpx
import pytest

from annostream import InvalidInput, NotFound, Project
from annostream.client.video import VideoCache
from tests.revhelpers import new_project
from tests.videos import make_video, read_number

TRANSPORTS = ["http", "embedded"]
CONTAINERS = ["mp4", "webm"]
N_FRAMES = 60


@pytest.fixture(params=TRANSPORTS)
def editor(request: pytest.FixtureRequest, server_store: tuple[str, Path]) -> Project:
    url, store_dir = server_store
    return new_project(request.param, url, store_dir, prefix="v")


@pytest.mark.parametrize("container", CONTAINERS)
def test_upload_probes_the_video(editor: Project, container: str) -> None:
    made = editor.upload("clips", data=make_video(N_FRAMES, container, gop=12), filename=f"a.{container}")
    assert made["type"] == "video" and made["frame_count"] == N_FRAMES
    file = editor.dataset("clips")[0]["file"]
    assert (file["width"], file["height"], file["frame_count"], file["fps"]) == (128, 32, N_FRAMES, 25.0)
    assert file["duration"] == pytest.approx(N_FRAMES / 25.0)
    assert file["codec"] == {"mp4": "h264", "webm": "vp9"}[container]
    assert file["keyframes"][0] == 0 and len(file["keyframes"]) >= N_FRAMES // 12
    assert file["content_type"] == {"mp4": "video/mp4", "webm": "video/webm"}[container]


@pytest.mark.parametrize("container", CONTAINERS)
def test_frame_k_is_frame_k_sequential_and_random(editor: Project, container: str) -> None:
    editor.upload("clips", data=make_video(N_FRAMES, container), filename=f"a.{container}")
    frames = editor.dataset("clips").frames()
    assert len(frames) == N_FRAMES
    cache = frames.video_cache
    seen = [(s["frame_number"], read_number(s["image"])) for s in frames]
    assert seen == [(k, k) for k in range(N_FRAMES)]
    decoder = next(iter(cache._decoders.values()))
    assert cache.fetches == 1 and decoder.seeks == 1  # one fetch, one seek, then decoding forward
    rng = random.Random(7)
    for k in [rng.randrange(N_FRAMES) for _ in range(40)] + [N_FRAMES - 1, 0, 1, 2]:
        sample = frames[k]
        assert (sample["frame_number"], read_number(sample["image"])) == (k, k)
    assert cache.fetches == 1


def test_step_and_two_videos(editor: Project) -> None:
    editor.upload("clips", data=make_video(30, "mp4"), filename="a.mp4")
    editor.upload("clips", data=make_video(20, "webm"), filename="b.webm")
    frames = editor.dataset("clips").frames(step=7)
    got = [(s["file"]["name"], s["frame_number"], read_number(s["image"])) for s in frames]
    assert got == [("a.mp4", k, k) for k in range(0, 30, 7)] + [("b.webm", k, k) for k in range(0, 20, 7)]


def test_video_cache_is_byte_bounded(editor: Project) -> None:
    data = [make_video(20 + i, "mp4") for i in range(3)]
    for i, d in enumerate(data):
        editor.upload("clips", data=d, filename=f"{i}.mp4")
    bound = max(map(len, data)) + 10
    frames = editor.dataset("clips").frames()
    frames.video_cache = VideoCache(max_bytes=bound, open_decoders=1)
    for s in frames:
        assert read_number(s["image"]) == s["frame_number"]
        assert frames.video_cache.size <= bound
    assert frames.video_cache.fetches == 3


def test_frame_past_the_end_is_404_naming_the_frame_count(editor: Project) -> None:
    editor.upload("clips", data=make_video(N_FRAMES, "mp4"), filename="a.mp4")
    frames = editor.dataset("clips").frames()
    item = frames.items([int(frames.units[0][0])])[int(frames.units[0][0])]
    with pytest.raises(NotFound) as err:
        frames.frame(item, N_FRAMES)
    assert err.value.status == 404 and f"{N_FRAMES} frames" in str(err.value)


@pytest.mark.parametrize("container", CONTAINERS)
def test_corrupt_video_is_422_with_the_decoders_reason(editor: Project, container: str) -> None:
    good = make_video(N_FRAMES, container)
    for bad in (b"\x00not a video at all" * 50, good[:400]):
        with pytest.raises(InvalidInput) as err:
            editor.upload("clips", data=bad, filename=f"bad.{container}")
        assert err.value.status == 422 and "not a readable video" in str(err.value)
        assert err.value.detail.get("reason")
    assert "clips" not in [d["name"] for d in editor.directory.list()]


def test_corrupt_video_over_http_is_a_422_response(server_store: tuple[str, Path]) -> None:
    url, store_dir = server_store
    project = new_project("http", url, store_dir, prefix="vbad")
    key = project.transport._auth
    response = httpx.post(
        f"{url}/api/v2/projects/{project.string_id}/datasets/Default/files",
        auth=key,
        files={"file": ("x.mkv", b"\x1a\x45\xdf\xa3garbage" * 20)},
    )
    assert response.status_code == 422
    assert "not a readable video" in response.json()["error"]["message"]


def test_instances_on_a_video_name_frames_inside_it(editor: Project) -> None:
    box = {"type": "box", "label": "cat", "geometry": {"x_min": 1, "y_min": 1, "x_max": 9, "y_max": 9}}
    with pytest.raises(InvalidInput, match="frame_number"):
        editor.upload("clips", data=make_video(10, "mp4"), filename="a.mp4", instances=[box])
    with pytest.raises(InvalidInput, match="past the end"):
        editor.upload(
            "clips", data=make_video(10, "mp4"), filename="a.mp4", instances=[{**box, "frame_number": 10}]
        )
