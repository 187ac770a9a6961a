"""A store and server for the explorer's tests: a private project with a COCO import and a
video with instances on some of its frames, a second private project (whose key must see
nothing of the first), and a public project holding a label named like an attack, a tag, a
later upload and one large image."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from annostream.client.transports import EmbeddedTransport
from annostream.formats.coco import read_coco
from annostream.server.launch import running_server
from tests.conftest import make_coco
from tests.videos import make_video

EVIL = '<script>alert("x")</script>'
ODD = "odd näme <x>?q=1#%20&y"  # a dataset name with non-ASCII, markup and URL syntax (slashes are refused)


@dataclass
class Site:
    url: str
    store_dir: Path
    coco: dict[str, Any]
    viewer: dict[str, str]
    other_viewer: dict[str, str]
    big_sha: str
    hidden_sha: str  # a picture only the private project "other" holds
    video: dict[str, Any]  # the upload reply of the private project's video (dataset "Videos")


VIDEO_FRAMES = 16


def video_instances() -> list[dict[str, Any]]:
    """A track of boxes on frames 0..7, and on frame 4 a second box, a polygon and keypoints;
    a second track annotated on frames 8 and 12 only (boxes interpolated on 9..11, not stored);
    frames 13.. hold nothing (frame k shows its number, see tests/videos.py); and the events
    of ``EVENT_RANGES``."""
    track = [
        {
            "type": "box",
            "label": "cat",
            "frame_number": k,
            "track_id": 1,
            "geometry": {"x_min": 2 + 8 * k, "y_min": 3, "x_max": 14 + 8 * k, "y_max": 20},
        }
        for k in range(8)
    ]
    sparse = [
        {
            "type": "box",
            "label": "dog",
            "frame_number": k,
            "track_id": 2,
            "geometry": {"x_min": x, "y_min": 4, "x_max": x + 20, "y_max": 24},
        }
        for k, x in ((8, 60), (12, 100))
    ]
    return [
        *track,
        *sparse,
        {
            "type": "box",
            "label": "dog",
            "frame_number": 4,
            "geometry": {"x_min": 90, "y_min": 10, "x_max": 120, "y_max": 30},
        },
        {
            "type": "polygon",
            "label": "cat",
            "frame_number": 4,
            "geometry": {"points": [[40, 2], [70, 5], [55, 28]]},
        },
        {
            "type": "keypoints",
            "label": "dog",
            "frame_number": 4,
            "geometry": {"points": [[10, 25, 2], [20, 28, 2], [30, 26, 0]]},
        },
        *EVENTS,
    ]


# Events of the video, as (label, first frame, last frame): two overlap (two lanes).
EVENT_RANGES = (("cat", 2, 6), ("dog", 5, 9), ("cat", 12, 12))
EVENTS = [{"type": "event", "label": lab, "geometry": {"start": a, "end": b}} for lab, a, b in EVENT_RANGES]


def png(width: int, height: int) -> bytes:
    """A smooth gradient: small as a PNG, slow enough to decode to make requests overlap."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def jpeg(width: int, height: int, color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="JPEG")
    return out.getvalue()


def _store_a_hostile_colour(store_dir: Path, label: str, color: str) -> None:
    """A colour the API now refuses (422), written as a store from before that check holds it:
    the pages must still never let it into their markup."""
    from sqlalchemy import update

    from annostream.store import Store
    from annostream.store.tables import labels

    store = Store.open(store_dir)
    try:
        with store.engine.begin() as conn:
            conn.execute(update(labels).where(labels.c.name == label).values(color=color))
    finally:
        store.close()


@pytest.fixture(scope="module", name="site")
def site_fixture(
    tmp_path_factory: pytest.TempPathFactory, new_store_dir: Callable[[Path], Path]
) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("explorer")
    ann = make_coco(root / "coco", 60, seed=5)  # more than one page of the grid
    store_dir = new_store_dir(root / "store")
    local = EmbeddedTransport(store_dir)
    local.create_project("seen", "Seen", False)
    coco = json.loads(ann.read_text())
    local.import_source("seen", "Default", read_coco(coco, root / "coco" / "images"), "coco")
    viewer = local.create_key("seen", "viewer")
    local.create_dataset("seen", "Videos")
    video = local.upload_file("seen", "Videos", "clip.mp4", make_video(VIDEO_FRAMES), video_instances(), {})
    local.create_project("other", None, False)
    hidden = local.upload_file("other", "Default", "hidden.jpg", jpeg(40, 30, (1, 2, 3)), [], {})
    other_viewer = local.create_key("other", "viewer")

    local.create_project("open", "Open <b>data</b>", True)
    local.create_label("open", EVIL, "#000")
    _store_a_hostile_colour(store_dir, EVIL, '#0"onclick=x')
    local.create_label("open", "car", "#123456")
    box = {"type": "box", "label": EVIL, "geometry": {"x_min": 4, "y_min": 6, "x_max": 40, "y_max": 30}}
    local.upload_file("open", "Default", f"{EVIL}.jpg", jpeg(64, 48, (200, 40, 40)), [box], {"note": EVIL})
    local.create_tag("open", "v1", None)
    car = {"type": "polygon", "label": "car", "geometry": {"points": [[1, 1], [30, 2], [20, 25]]}}
    local.upload_file("open", "Default", "later.jpg", jpeg(64, 48, (40, 40, 200)), [car], {})
    big = local.upload_file("open", "Default", "big.png", png(2400, 1800), [], {})
    local.import_source("open", ODD, read_coco(coco, root / "coco" / "images"), "coco")
    with running_server(store_dir) as url:
        yield Site(url, store_dir, coco, viewer, other_viewer, big["sha256"], hidden["sha256"], video)
