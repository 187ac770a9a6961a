"""The explorer in headless Chromium (Debian's package, driven by Playwright): what a person
sees, a video's frame scrubber included. ``ANNOSTREAM_SCREENSHOTS=1`` also writes the
README's screenshots of the demo dataset and the demo's video."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from annostream.service.video import interpolate_tracks
from tests import browser
from tests.explorer_site import EVENT_RANGES, VIDEO_FRAMES, Site, site_fixture  # noqa: F401  (the fixture `site`)

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    browser.require()
    with browser.chromium() as b:
        yield b


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1200, "height": 800})
    yield context.new_page()
    context.close()


def _give_key(page: Any, key: dict[str, str]) -> None:
    page.fill("#client_id", key["client_id"])
    page.fill("#client_secret", key["client_secret"])
    page.click("#key-submit")
    page.wait_for_load_state("load")


def _api_ids(site: Site, project: str, query: str | None = None) -> list[int]:
    r = httpx.get(
        f"{site.url}/api/v2/projects/{project}/datasets/Default/ids",
        params={"query": query} if query else {},
        auth=(site.viewer["client_id"], site.viewer["client_secret"]),
    )
    return list(memoryview(r.content).cast("q"))


def _scroll_to_end(page: Any) -> None:
    """Scroll until the infinite grid has loaded its last page (the marker goes away)."""
    for _ in range(50):
        if page.locator("#more").count() == 0:
            return
        page.mouse.wheel(0, 5000)
        page.wait_for_timeout(150)
    raise AssertionError("the grid never finished loading")


def test_private_project_asks_for_a_key_and_shows_no_data_until_a_valid_one(site: Site, page: Any) -> None:
    page.goto(f"{site.url}/explore/p/seen/d/Default")
    assert page.locator("#key-prompt").is_visible()
    assert page.locator(".tile").count() == 0 and page.locator("#datasets").count() == 0
    _give_key(page, {**site.viewer, "client_secret": "not-the-secret"})
    assert page.locator("#key-prompt").is_visible()
    assert "invalid API key" in page.locator("#key-message").inner_text()
    assert page.locator("#datasets").count() == 0
    _give_key(page, site.viewer)
    assert page.locator("#key-prompt").count() == 0
    assert page.locator('#datasets tr[data-dataset="Default"]').is_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "annostream_key")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/explore/p/seen/"
    assert "annostream_key" not in page.evaluate("document.cookie")


def test_a_viewer_key_of_another_project_sees_nothing(site: Site, page: Any) -> None:
    page.goto(f"{site.url}/explore/p/seen/")
    _give_key(page, site.other_viewer)
    assert page.locator("#key-prompt").is_visible()
    assert "does not grant access" in page.locator("#key-message").inner_text()
    page.goto(f"{site.url}/explore/p/seen/d/Default")
    assert page.locator("#key-prompt").is_visible() and page.locator(".tile").count() == 0


def test_the_grid_shows_the_count_of_a_query_and_scrolls_through_all_of_it(site: Site, page: Any) -> None:
    page.goto(f"{site.url}/explore/p/seen/")
    _give_key(page, site.viewer)
    page.goto(f"{site.url}/explore/p/seen/d/Default")
    _scroll_to_end(page)
    everything = _api_ids(site, "seen")
    assert len(everything) > 48  # more than one keyset page
    assert int(page.locator("#count").inner_text()) == len(everything)
    shown = [int(v) for v in page.locator(".tile").evaluate_all("els => els.map(e => e.dataset.file)")]
    assert shown == everything
    query = "labels.dog >= 1 and not labels.cat > 0"
    page.fill("#q", query)
    page.press("#q", "Enter")
    page.wait_for_load_state("load")
    _scroll_to_end(page)
    expected = _api_ids(site, "seen", query)
    assert 0 < len(expected) < len(everything)
    assert int(page.locator("#count").inner_text()) == len(expected)
    assert page.locator(".tile").count() == len(expected)


def test_a_query_error_shows_its_message_under_its_column(site: Site, page: Any) -> None:
    query = "labels.cat >= 1 and (file.width >"
    page.goto(f"{site.url}/explore/p/open/d/Default")
    page.fill("#q", query)
    page.press("#q", "Enter")
    page.wait_for_load_state("load")
    api = httpx.get(f"{site.url}/api/v2/projects/open/datasets/Default/count", params={"query": query})
    column = api.json()["error"]["detail"]["column"]
    assert page.locator("#query-message").is_visible()
    assert f"column {column}" in page.locator("#query-message").inner_text()
    assert page.locator(".tile").count() == 0
    # The caret is drawn under the very character the parser stopped at.
    lefts = page.evaluate("""() => {
        const col = Number(document.getElementById('query-error').dataset.column);
        const text = document.querySelector('.query-line').firstChild;
        const caret = document.getElementById('caret').firstChild;
        const at = (node, i) => { const r = document.createRange(); r.setStart(node, i);
                                  r.setEnd(node, i + 1); return r.getBoundingClientRect().left; };
        return [at(text, Math.min(col - 1, text.length - 2)), at(caret, col - 1)];
    }""")
    assert lefts[0] == pytest.approx(lefts[1], abs=1.0) or column > len(query)


def _items(site: Site, ids: list[int]) -> list[dict[str, Any]]:
    auth = (site.viewer["client_id"], site.viewer["client_secret"])
    reply = httpx.post(f"{site.url}/api/v2/projects/seen/items:batch", json={"ids": ids}, auth=auth)
    return list(reply.json()["items"])


def _assert_drawn_where_they_are(page: Any, instances: list[dict[str, Any]], width: int, height: int) -> None:
    """The picture's visible overlays are exactly ``instances``, each where its coordinates
    land on the picture (the shape's own coordinates, not its stroke's outline, mapped to the
    screen by the browser)."""
    svg = page.locator("#picture svg.overlay")
    box = svg.bounding_box()
    scale = box["width"] / width
    assert box["height"] == pytest.approx(height * scale, abs=1.0)
    drawn = page.locator("#picture .inst:not(.off):not(.interpolated)")
    assert drawn.count() == len(instances)
    by_id = {i["id"]: i for i in instances}

    def on_screen(x: float, y: float) -> tuple[float, float]:
        return box["x"] + x * scale, box["y"] + y * scale

    to_screen = (
        "(e, pts) => pts.map(([x, y]) => { const p = e.ownerSVGElement.createSVGPoint(); "
        "p.x = x; p.y = y; const q = p.matrixTransform(e.getScreenCTM()); return [q.x, q.y]; })"
    )
    seen = set()
    for n in range(drawn.count()):
        el = drawn.nth(n)
        assert el.is_visible()
        inst = by_id[int(el.get_attribute("data-instance"))]
        seen.add(inst["id"])
        if inst["type"] == "box":
            x, y, w, h = (float(el.get_attribute(a)) for a in ("x", "y", "width", "height"))
            corners = el.evaluate(to_screen, [[x, y], [x + w, y + h]])
            x0, y0, x1, y1 = inst["bbox"]
            want = [on_screen(x0, y0), on_screen(x1, y1)]
        elif inst["type"] == "keypoints":
            circles = el.locator("circle")
            pts = [
                [float(circles.nth(i).get_attribute("cx")), float(circles.nth(i).get_attribute("cy"))]
                for i in range(circles.count())
            ]
            corners = el.evaluate(to_screen, pts)
            want = [on_screen(p[0], p[1]) for p in inst["geometry"]["points"] if len(p) == 2 or p[2] > 0]
        elif inst["type"] == "polygon":
            corners = el.evaluate(
                "e => Array.from(e.points).map(p => p.matrixTransform(e.getScreenCTM())).map(p => [p.x, p.y])"
            )
            want = [on_screen(x, y) for x, y in inst["geometry"]["points"]]
        else:
            continue
        assert len(corners) == len(want)
        for got, expected in zip(corners, want, strict=True):
            assert tuple(got) == pytest.approx(expected, abs=1.0)
    assert seen == set(by_id)


def test_a_file_page_draws_each_instance_where_it_is(site: Site, page: Any) -> None:
    found = _items(site, _api_ids(site, "seen"))
    item = max(found, key=lambda i: (len({x["type"] for x in i["instances"]}), len(i["instances"])))
    page.goto(f"{site.url}/explore/p/seen/")
    _give_key(page, site.viewer)
    page.goto(f"{site.url}/explore/p/seen/f/{item['id']}")
    _assert_drawn_where_they_are(page, item["instances"], item["file"]["width"], item["file"]["height"])
    assert page.locator("#instances tbody tr").count() == len(item["instances"])


def _frame_shown(page: Any, k: int) -> None:
    """Wait until the scrubber shows frame ``k``, and check the picture is that very frame."""
    import numpy as np
    from PIL import Image

    from tests.videos import read_number

    page.wait_for_selector(f'#picture svg.overlay[data-shown="{k}"]')
    assert page.locator("#frame").input_value() == str(k)
    assert f"frame={k}" in page.url
    href = page.locator("#picture svg.overlay image").get_attribute("href")
    picture = page.request.get(f"{page.url.split('/explore/')[0]}{href}")  # the page's own cookies
    assert picture.ok and picture.headers["content-type"] == "image/jpeg"
    assert read_number(np.asarray(Image.open(io.BytesIO(picture.body())).convert("RGB"))) == k


def test_scrubbing_a_video_draws_each_frames_instances_where_they_are(site: Site, page: Any) -> None:
    (video,) = _items(site, [site.video["id"]])
    f = video["file"]
    on = {k: [i for i in video["instances"] if i["frame_number"] == k] for k in range(VIDEO_FRAMES)}
    assert len(on[0]) == 1 and len(on[4]) == 4 and not on[14]  # frames with one, several and none
    page.goto(f"{site.url}/explore/p/seen/f/{video['id']}")
    assert page.locator("#key-prompt").is_visible() and page.locator("#scrubber").count() == 0
    _give_key(page, site.viewer)
    page.goto(f"{site.url}/explore/p/seen/f/{video['id']}")
    _frame_shown(page, 0)
    _assert_drawn_where_they_are(page, on[0], f["width"], f["height"])
    steps = [
        ("next", lambda: page.click("#frame-next"), 1),
        ("slider", lambda: page.locator("#frame").fill("5"), 5),
        ("prev", lambda: page.click("#frame-prev"), 4),
        ("keyboard", lambda: page.locator("#frame").press("End"), VIDEO_FRAMES - 1),
        ("slider back", lambda: page.locator("#frame").fill("14"), 14),
        ("slider", lambda: page.locator("#frame").fill("7"), 7),
    ]
    for how, move, k in steps:
        move()
        _frame_shown(page, k)
        _assert_drawn_where_they_are(page, on[k], f["width"], f["height"])
        assert int(page.locator("#frame-instances").inner_text()) == len(on[k]), how
        current = page.locator("#instances tr.current").evaluate_all("els => els.map(e => e.dataset.frame)")
        assert current == [str(k)] * len(on[k]), how
    page.goto(f"{site.url}/explore/p/seen/f/{video['id']}?frame=4")  # a link to a frame opens there
    _frame_shown(page, 4)
    _assert_drawn_where_they_are(page, on[4], f["width"], f["height"])
    # A track's boxes between its keyframes: hidden until asked for, then drawn dashed where the
    # SDK's ds.frames(interpolate=True) puts them (the same interpolation).
    filled = [i for i in interpolate_tracks(video["instances"]) if i.get("interpolated")]
    page.locator("#frame").fill("10")
    _frame_shown(page, 10)
    assert not on[10] and page.locator("#picture .inst.interpolated:visible").count() == 0
    page.check("#interpolate")
    shown = page.locator("#picture .inst.interpolated:visible")
    (want,) = [i for i in filled if i["frame_number"] == 10]
    assert shown.count() == 1 and shown.get_attribute("stroke-dasharray")
    x, y, w, h = (float(shown.get_attribute(a)) for a in ("x", "y", "width", "height"))
    assert (x, y, x + w, y + h) == pytest.approx(tuple(want["bbox"]), abs=0.01)
    page.locator("#frame").fill("4")
    _frame_shown(page, 4)
    assert page.locator("#picture .inst.interpolated:visible").count() == 0  # none on frame 4
    _assert_drawn_where_they_are(page, on[4], f["width"], f["height"])


def test_a_videos_events_are_ranges_under_the_slider(site: Site, page: Any) -> None:
    (video,) = _items(site, [site.video["id"]])
    frames = video["file"]["frame_count"]
    events = sorted(
        (i["geometry"]["start"], i["geometry"]["end"]) for i in video["instances"] if i["type"] == "event"
    )
    assert events == sorted((a, b) for _, a, b in EVENT_RANGES)
    page.goto(f"{site.url}/explore/p/seen/f/{video['id']}?frame=0")
    _give_key(page, site.viewer)
    page.goto(f"{site.url}/explore/p/seen/f/{video['id']}?frame=0")
    _frame_shown(page, 0)
    line = page.locator("#timeline").bounding_box()
    bars = page.locator("#timeline .event")
    assert bars.count() == len(events)
    lanes = {}
    for n in range(bars.count()):
        bar = bars.nth(n)
        a, b = int(bar.get_attribute("data-start")), int(bar.get_attribute("data-end"))
        box = bar.bounding_box()
        assert box["x"] == pytest.approx(line["x"] + line["width"] * a / frames, abs=2), (a, b)
        assert box["width"] == pytest.approx(line["width"] * (b - a + 1) / frames, abs=2), (a, b)
        lanes[(a, b)] = box["y"]
    assert lanes[(2, 6)] != lanes[(5, 9)], "overlapping events take separate lanes"
    for k in (0, 3, 5, 9, 12, 14):
        page.locator("#frame").fill(str(k))
        _frame_shown(page, k)
        on = page.locator("#timeline .event.on").evaluate_all("els => els.map(e => Number(e.dataset.start))")
        assert sorted(on) == [a for a, b in events if a <= k <= b], k
        assert int(page.locator("#frame-events").inner_text()) == len(on)
        assert page.locator("#timeline .cursor").get_attribute("x1") == str(k + 0.5)
    page.locator('#timeline .event[data-start="12"]').click()
    _frame_shown(page, 12)


@pytest.mark.skipif(
    os.environ.get("ANNOSTREAM_SCREENSHOTS") != "1",
    reason="writes docs/ screenshots only when ANNOSTREAM_SCREENSHOTS=1",
)
def test_screenshots_of_the_demo_dataset(chromium: Any, tmp_path: Path) -> None:
    from PIL import Image

    from annostream.client.transports import EmbeddedTransport
    from annostream.demo import build_photo_coco
    from annostream.demo_video import build_demo_video
    from annostream.formats.coco import read_coco
    from annostream.server.launch import running_server

    ann = build_photo_coco(tmp_path / "source", 48, max_side=480)
    local = EmbeddedTransport(tmp_path / "store")
    local.create_project("demo", "annostream demo", True)
    local.import_source("demo", "Default", read_coco(ann, tmp_path / "source" / "images"), "coco")
    video, tracked = build_demo_video()
    local.create_label("demo", "crossing", None)
    clip = local.upload_file("demo", "Video", "cat_crossing.mp4", video, tracked, {})
    with running_server(tmp_path / "store") as url:
        context = chromium.new_context(viewport={"width": 1100, "height": 640})
        page = context.new_page()
        shots = {}
        page.goto(f"{url}/explore/p/demo/d/Default?q=labels.cat+%3E+0+or+labels.cup+%3E+0")
        page.wait_for_load_state("networkidle")
        shots["explorer-grid.png"] = page.screenshot()
        page.goto(f"{url}/explore/p/demo/f/3")
        page.wait_for_load_state("networkidle")
        shots["explorer-file.png"] = page.screenshot()
        page.goto(f"{url}/explore/p/demo/f/{clip['id']}?frame=16")
        page.check("#interpolate")
        page.locator("#frame").fill("20")  # between two keyframes: the track's box, dashed
        page.wait_for_selector('#picture svg.overlay[data-shown="20"]')
        assert page.locator("#picture .inst.interpolated:visible").count() == 1
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_load_state("networkidle")
        page.set_viewport_size({"width": 1100, "height": 720})  # the events under the slider too
        shots["explorer-video.png"] = page.screenshot()
        context.close()
    for name, data in shots.items():
        image = Image.open(io.BytesIO(data)).convert("RGB").quantize(colors=256, dither=Image.Dither.NONE)
        image.save(DOCS / name, optimize=True)
        assert (DOCS / name).stat().st_size < 400_000
