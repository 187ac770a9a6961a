"""Frames and clips streamed into training: frame queries, clips with aligned targets and
events, a 2-worker DataLoader, sharded streams and tf.data; on both transports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from annostream import Project, QueryError
from tests.revhelpers import new_project
from tests.videos import make_video, read_number

TRANSPORTS = ["http", "embedded"]
LENGTHS = {"a.mp4": 30, "b.webm": 20}


def _instances(n: int) -> list[dict]:
    """A cat on every even frame (x_min = the frame number), a dog track on frames 0 and 9."""
    out = [
        {
            "type": "box",
            "label": "cat",
            "frame_number": k,
            "geometry": {"x_min": k, "y_min": 0, "x_max": k + 10, "y_max": 10},
        }
        for k in range(0, n, 2)
    ]
    out += [
        {
            "type": "box",
            "label": "dog",
            "frame_number": k,
            "track_id": 7,
            "geometry": {"x_min": 0, "y_min": 0, "x_max": 5, "y_max": 5},
        }
        for k in (0, 9)
    ]
    out.append({"type": "event", "label": "lane_change", "geometry": {"start": 6, "end": 11}})
    return out


@pytest.fixture(params=TRANSPORTS)
def videos(request: pytest.FixtureRequest, server_store: tuple[str, Path]) -> Project:
    url, store_dir = server_store
    project = new_project(request.param, url, store_dir, prefix="s")
    project.create_label("lane_change")
    for name, n in LENGTHS.items():
        project.upload(
            "videos", data=make_video(n, name.rsplit(".", 1)[1]), filename=name, instances=_instances(n)
        )
    project.upload("videos", data=make_video(4, "mp4"), filename="short.mp4")
    return project


def _frames(view: object) -> list[tuple[int, int]]:
    return [(int(f), int(k)) for f, k in view.units]  # type: ignore[attr-defined]


def test_frame_queries_select_frames_not_videos(videos: Project) -> None:
    ds = videos.dataset("videos")
    names = {s["file"]["id"]: s["file"]["name"] for s in ds}

    def frames(query: str) -> list[tuple[str, int]]:
        return [(names[f], k) for f, k in _frames(ds.frames(query))]

    assert frames("labels.cat > 0") == [(n, k) for n, c in LENGTHS.items() for k in range(0, c, 2)]
    assert frames("labels.cat = 0 and frame.number < 4") == [
        ("a.mp4", 1),
        ("a.mp4", 3),
        ("b.webm", 1),
        ("b.webm", 3),
        ("short.mp4", 0),
        ("short.mp4", 1),
        ("short.mp4", 2),
        ("short.mp4", 3),
    ]
    assert frames('events.lane_change and file.name = "b.webm"') == [("b.webm", k) for k in range(6, 12)]
    assert frames("tracks.count >= 1") == [(n, k) for n in LENGTHS for k in (0, 9)]
    assert frames("file.duration > 1 and frame.number >= 28") == [("a.mp4", 28), ("a.mp4", 29)]
    sample = ds.frames("labels.dog > 0 and labels.cat > 0")[1]
    assert (sample["file"]["name"], sample["frame_number"], read_number(sample["image"])) == ("b.webm", 0, 0)


def test_file_level_video_terms(videos: Project) -> None:
    ds = videos.dataset("videos")
    assert ds.slice('file.type = "video"').count() == 3
    assert [s["file"]["name"] for s in ds.slice("file.duration >= 0.8")] == ["a.mp4", "b.webm"]
    assert [s["file"]["name"] for s in ds.slice("events.lane_change = 1 and tracks.count = 1")] == [
        "a.mp4",
        "b.webm",
    ]
    assert ds.slice("events.lane_change = 0").count() == 1
    with pytest.raises(QueryError, match="frame query"):
        ds.slice("frame.number > 3").count()
    with pytest.raises(QueryError):
        ds.frames("events.no_such_event")


def test_clips_have_aligned_frames_targets_and_events(videos: Project) -> None:
    clips = videos.dataset("videos").clips(length=8, stride=4)
    assert len(clips) == len(range(0, 23, 4)) + len(range(0, 13, 4))  # short.mp4 has none
    for clip in clips:
        assert clip["clip"].shape == (8, 32, 128, 3) and clip["clip"].dtype == np.uint8
        assert [read_number(f) for f in clip["clip"]] == list(range(clip["start"], clip["start"] + 8))
        for k, target in zip(clip["frame_numbers"], clip["targets"], strict=True):
            assert target["frame_number"] == k
            cats = [b[0] for b, lab in zip(target["boxes"], target["labels"], strict=True) if lab == "cat"]
            assert cats == ([k] if k % 2 == 0 else [])
        overlaps = clip["start"] <= 11 and clip["start"] + 7 >= 6
        assert [(e["event"], e["start"], e["end"]) for e in clip["events"]] == (
            [("lane_change", 6, 11)] if overlaps else []
        )


def clip_target(sample: dict) -> dict:
    cats = [
        [float(b[0]) for b, lab in zip(t["boxes"], t["labels"], strict=True) if lab == "cat"]
        for t in sample["targets"]
    ]
    return {
        "file_id": sample["file"]["id"],
        "start": sample["start"],
        "frames": torch.as_tensor(sample["frame_numbers"]),
        "cat_x": torch.tensor([c[0] if c else -1.0 for c in cats]),
    }


def test_clip_dataloader_with_two_workers_yields_every_clip_once(videos: Project) -> None:
    clips = videos.dataset("videos").clips(length=8, stride=4)
    loader = DataLoader(clips.to_pytorch(target=clip_target), batch_size=3, num_workers=2, shuffle=True)
    seen = []
    for pixels, target in loader:
        assert pixels.shape[1:] == (8, 32, 128, 3)
        for b in range(pixels.shape[0]):
            numbers = [read_number(f.numpy()) for f in pixels[b]]
            assert numbers == target["frames"][b].tolist()
            assert target["cat_x"][b].tolist() == [float(k) if k % 2 == 0 else -1.0 for k in numbers]
            seen.append((int(target["file_id"][b]), int(target["start"][b])))
    assert sorted(seen) == sorted(_frames(clips))


def test_streams_of_frames_and_clips_shard_and_resume(videos: Project) -> None:
    frames = videos.dataset("videos").frames(step=3)
    everything = []
    for rank in (0, 1):
        stream = frames.stream(seed=3, rank=rank, world_size=2)
        everything += [(s["file"]["id"], s["frame_number"]) for s in stream]
    n = len(frames)  # equal shares: one rank repeats a frame when n is odd
    assert set(everything) == set(_frames(frames)) and len(everything) == n + n % 2
    clips = videos.dataset("videos").clips(length=8, stride=8)
    stream = clips.stream(target=clip_target, seed=1)
    first = [(int(t["file_id"]), t["start"]) for _, t in stream]
    state = stream.state_dict()
    state["position"] = 2
    again = clips.stream(target=clip_target, seed=1)
    again.load_state_dict(state)
    assert [(int(t["file_id"]), t["start"]) for _, t in again] == first[2:]


def test_frames_and_clips_in_tensorflow(videos: Project) -> None:
    tf = pytest.importorskip("tensorflow")
    frames = videos.dataset("videos").frames(step=5)
    got = [(int(e["frame_number"]), read_number(e["image"].numpy())) for e in frames.to_tensorflow()]
    assert got == [(k, k) for _, k in _frames(frames)]
    clips = videos.dataset("videos").clips(length=4, stride=10).to_tensorflow().batch(2)
    batch = next(iter(clips))
    assert batch["clip"].shape == (2, 4, 32, 128, 3) and batch["clip"].dtype == tf.uint8
