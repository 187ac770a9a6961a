"""The explorer over real HTTP (no browser): access, refusals, escaping, keyset pages,
thumbnails made once per (blob, size), a video's frames made once per (blob, frame, size).
Runs on both stacks."""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from annostream.client.transports import EmbeddedTransport
from annostream.errors import Forbidden
from annostream.server.web import thumbs
from annostream.store import Store
from tests.explorer_site import (  # noqa: F401  (the fixture `site`)
    EVIL,
    ODD,
    VIDEO_FRAMES,
    Site,
    site_fixture,
)


def _client(site: Site) -> httpx.Client:
    return httpx.Client(base_url=site.url, timeout=60)


@contextmanager
def _with_key(site: Site, project: str, key: dict[str, str]) -> Iterator[httpx.Client]:
    """A client that went through the key form the way a browser does."""
    with _client(site) as client:
        r = client.post(
            f"/explore/p/{project}/key",
            headers={"Origin": site.url},
            data={"client_id": key["client_id"], "client_secret": key["client_secret"]},
        )
        assert r.status_code == 303, r.text
        yield client


def _count(html: str) -> int:
    found = re.search(r'id="count" data-count="(\d+)"', html)
    assert found, html[:2000]
    return int(found.group(1))


def _tile_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<figure class="tile" data-file="(\d+)"', html)]


def test_root_sends_browsers_to_the_explorer_and_programs_json(site: Site) -> None:
    with _client(site) as c:
        r = c.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
        assert r.status_code == 303 and r.headers["location"] == "/explore/"
        assert c.get("/").json()["explore"] == "/explore/"


def test_index_lists_only_what_the_caller_may_read(site: Site) -> None:
    with _client(site) as c:
        r = c.get("/explore/")
        assert r.status_code == 200
        assert 'data-project="open"' in r.text
        assert 'data-project="seen"' not in r.text and 'data-project="other"' not in r.text
        assert "Open &lt;b&gt;data&lt;/b&gt;" in r.text
        assert "default-src 'none'" in r.headers["content-security-policy"]


def test_private_project_shows_the_key_prompt_and_no_data(site: Site) -> None:
    with _client(site) as c:
        for path in (
            "/explore/p/seen/",
            "/explore/p/seen/d/Default",
            "/explore/p/seen/f/1",
            "/explore/p/seen/changes?d=Default&since=0",
        ):
            r = c.get(path)
            assert r.status_code == 401, path
            assert 'id="key-prompt"' in r.text
            assert "Default" not in r.text and "tile" not in r.text and "img_000" not in r.text
        sha = site.big_sha
        assert c.get(f"/explore/p/seen/thumb/128/{sha}").status_code == 401


def test_key_form_refuses_cross_site_posts_and_bad_keys(site: Site) -> None:
    key = {"client_id": site.viewer["client_id"], "client_secret": site.viewer["client_secret"]}
    with _client(site) as c:
        assert c.post("/explore/p/seen/key", data=key).status_code == 403
        r = c.post("/explore/p/seen/key", data=key, headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and "set-cookie" not in r.headers
        r = c.post("/explore/p/seen/key", data=key, headers={"Referer": "https://evil.example/x"})
        assert r.status_code == 403 and "set-cookie" not in r.headers
        r = c.post(
            "/explore/p/seen/key", data=key, headers={"Origin": site.url, "Sec-Fetch-Site": "cross-site"}
        )
        assert r.status_code == 403
        r = c.post(
            "/explore/p/seen/key", headers={"Origin": site.url}, data={**key, "client_secret": "wrong"}
        )
        assert r.status_code == 401 and "set-cookie" not in r.headers and 'id="key-prompt"' in r.text
        r = c.post(
            "/explore/p/seen/key",
            headers={"Origin": site.url},
            data={"client_id": key["client_id"], "client_secret": "a b\r\nSet-Cookie: x=1"},
        )
        assert r.status_code == 401 and "set-cookie" not in r.headers
        assert c.post("/explore/p/seen/key", headers={"Origin": site.url}, data={}).status_code == 422


def test_a_valid_key_is_kept_in_a_strict_httponly_cookie(site: Site) -> None:
    with _client(site) as c:
        r = c.post(
            "/explore/p/seen/key",
            headers={"Origin": site.url},
            data={"client_id": site.viewer["client_id"], "client_secret": site.viewer["client_secret"]},
        )
        assert r.status_code == 303 and r.headers["location"] == "/explore/p/seen/"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert "Path=/explore/p/seen/" in cookie
        page = c.get("/explore/p/seen/")
        assert page.status_code == 200 and 'data-dataset="Default"' in page.text
        assert _count(c.get("/explore/p/seen/d/Default").text) == len(site.coco["images"])
        # The cookie is scoped to that project's pages: the API never sees it.
        assert c.get("/api/v2/projects/seen").status_code == 401
        r = c.post("/explore/p/seen/forget", headers={"Origin": site.url})
        assert r.status_code == 303
        assert c.get("/explore/p/seen/").status_code == 401


def test_a_viewer_key_of_another_project_sees_nothing(site: Site) -> None:
    other = site.other_viewer
    with _client(site) as c:
        r = c.post(
            "/explore/p/seen/key",
            headers={"Origin": site.url},
            data={"client_id": other["client_id"], "client_secret": other["client_secret"]},
        )
        assert r.status_code == 403 and "set-cookie" not in r.headers
        assert "does not grant access" in r.text
        # Even a cookie carrying that key (set by hand) shows the prompt, not data.
        c.cookies.set(
            "annostream_key", f"{other['client_id']}:{other['client_secret']}", path="/explore/p/seen/"
        )
        r = c.get("/explore/p/seen/d/Default")
        assert r.status_code == 403 and 'id="key-prompt"' in r.text and "tile" not in r.text
        # A header works as on the API, and is refused the same way.
        r = c.get("/explore/p/seen/", auth=(other["client_id"], other["client_secret"]))
        assert r.status_code == 403


def test_grid_count_is_the_api_count_and_pages_cover_the_slice(site: Site) -> None:
    query = "labels.cat >= 1 or labels.person >= 1"
    auth = (site.viewer["client_id"], site.viewer["client_secret"])
    api = httpx.get(
        f"{site.url}/api/v2/projects/seen/datasets/Default/ids", params={"query": query}, auth=auth
    )
    expected = list(memoryview(api.content).cast("q"))
    with _with_key(site, "seen", site.viewer) as c:
        r = c.get("/explore/p/seen/d/Default", params={"q": query})
        assert r.status_code == 200 and _count(r.text) == len(expected)
        # Every page is one keyset step; together they are the slice, in order, once each.
        c.get("/explore/p/seen/d/Default")
        whole = c.get("/explore/p/seen/d/Default")
        seen = _tile_ids(whole.text)
        nxt = re.search(r'id="more" data-next="([^"]+)"', whole.text)
        url = nxt.group(1).replace("&amp;", "&") if nxt else ""
        while url:
            page = c.get(url)
            assert page.status_code == 200
            seen += _tile_ids(page.text)
            url = page.headers["x-next-page"]
        all_ids = list(
            memoryview(
                httpx.get(f"{site.url}/api/v2/projects/seen/datasets/Default/ids", auth=auth).content
            ).cast("q")
        )
        assert seen == all_ids


def test_a_bad_query_is_a_400_with_its_column(site: Site) -> None:
    query = "labels.cat >= 1 and fle.width > 3"
    api = httpx.get(f"{site.url}/api/v2/projects/open/datasets/Default/count", params={"query": query})
    assert api.status_code == 400
    column = api.json()["error"]["detail"]["column"]
    with _client(site) as c:
        r = c.get("/explore/p/open/d/Default", params={"q": query})
        assert r.status_code == 400
        assert f'data-column="{column}"' in r.text
        caret = re.search(r'id="caret">( *)\^<', r.text)
        assert caret and len(caret.group(1)) == column - 1
        assert "tile" not in r.text.split('id="query-error"')[1]


def test_user_text_is_escaped_everywhere(site: Site) -> None:
    with _client(site) as c:
        pages = [
            c.get("/explore/p/open/"),
            c.get("/explore/p/open/d/Default"),
            c.get("/explore/p/open/changes", params={"d": "Default", "since": "v1"}),
            c.get("/explore/p/open/d/Default", params={"q": EVIL}),
            c.get("/explore/p/open/d/Default", params={"as_of": EVIL}),
        ]
        first = re.search(r'data-file="(\d+)"', pages[1].text)
        assert first
        pages.append(c.get(f"/explore/p/open/f/{first.group(1)}"))
        for page in pages:
            assert "<script>alert" not in page.text
            assert "onclick=x" not in page.text
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in pages[0].text  # the legend
        assert "&lt;script&gt;" in pages[-1].text  # file name, label and metadata


def test_revision_picker_and_changes_since_a_tag(site: Site) -> None:
    with _client(site) as c:
        assert _count(c.get("/explore/p/open/d/Default", params={"as_of": "v1"}).text) == 1
        assert _count(c.get("/explore/p/open/d/Default").text) == 3
        assert c.get("/explore/p/open/d/Default", params={"as_of": "nosuchtag"}).status_code == 404
        assert c.get("/explore/p/open/d/Default", params={"as_of": "999"}).status_code == 404
        assert c.get("/explore/p/open/d/Default", params={"as_of": "-1"}).status_code == 422
        r = c.get("/explore/p/open/changes", params={"d": "Default", "since": "v1"})
        assert r.status_code == 200
        kinds = re.findall(r'data-kind="(\w+)" data-file="\d+"', r.text)
        assert kinds == ["file_added", "file_added"]
        r = c.get("/explore/p/open/changes", params={"d": "Default", "since": "v1", "q": "labels.car > 0"})
        assert re.findall(r'data-kind="(\w+)"', r.text) == ["file_added"]


def test_file_page_draws_one_overlay_per_instance_at_its_place(site: Site) -> None:
    auth = (site.viewer["client_id"], site.viewer["client_secret"])
    ids = list(
        memoryview(
            httpx.get(f"{site.url}/api/v2/projects/seen/datasets/Default/ids", auth=auth).content
        ).cast("q")
    )
    items = httpx.post(f"{site.url}/api/v2/projects/seen/items:batch", json={"ids": ids}, auth=auth).json()
    item = max(items["items"], key=lambda i: sum(x["type"] == "box" for x in i["instances"]))
    with _with_key(site, "seen", site.viewer) as c:
        html = c.get(f"/explore/p/seen/f/{item['id']}").text
    drawn = re.findall(r'class="inst inst-(\w+)" data-instance="(\d+)"', html)
    assert len(drawn) == len(item["instances"])
    for inst in item["instances"]:
        if inst["type"] != "box":
            continue
        rect = re.search(
            rf'data-instance="{inst["id"]}"[^>]* x="([\d.]+)" y="([\d.]+)" '
            r'width="([\d.]+)" height="([\d.]+)"',
            html,
        )
        assert rect
        x, y, w, h = (float(v) for v in rect.groups())
        x0, y0, x1, y1 = inst["bbox"]
        assert (x, y, x + w, y + h) == pytest.approx((x0, y0, x1, y1), abs=0.01)


def test_thumbnails_fixed_sizes_immutable_and_confined_to_the_project(site: Site) -> None:
    with _client(site) as c:
        sha = site.big_sha
        r = c.get(f"/explore/p/open/thumb/256/{sha}")
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert "immutable" in r.headers["cache-control"] and r.headers["etag"] == f'"{sha}"'
        assert max(Image.open(io.BytesIO(r.content)).size) == 256
        assert c.get(f"/explore/p/open/thumb/1000/{sha}").status_code == 422
        assert c.get(f"/explore/p/open/thumb/100000/{sha}").status_code == 422
        assert c.get("/explore/p/open/thumb/256/" + "0" * 64).status_code == 404
        assert c.get("/explore/p/open/thumb/256/../../etc").status_code == 404
        assert c.get("/explore/p/open/blob/" + "a" * 64).status_code == 404
        full = c.get(f"/explore/p/open/blob/{sha}")
        assert full.status_code == 200 and Image.open(io.BytesIO(full.content)).size == (2400, 1800)
    # A blob of a private project is not reachable through a public one, nor another's key.
    sha = site.hidden_sha
    assert httpx.get(f"{site.url}/explore/p/open/thumb/128/{sha}").status_code == 404
    assert httpx.get(f"{site.url}/explore/p/open/blob/{sha}").status_code == 404


def test_concurrent_requests_decode_a_blob_once_per_size(site: Site) -> None:
    url = f"{site.url}/explore/p/open/thumb/512/{site.big_sha}"
    n = 12
    barrier = threading.Barrier(n)
    results: list[httpx.Response] = []

    def fetch() -> None:
        with httpx.Client(timeout=60) as c:
            barrier.wait()
            results.append(c.get(url))

    threads = [threading.Thread(target=fetch) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [200] * n
    assert sorted(r.headers["x-thumbnail"] for r in results) == ["cached"] * (n - 1) + ["made"]
    assert len({r.content for r in results}) == 1


def test_thumbnail_cache_in_process_makes_each_size_once(site: Site, tmp_path: Path) -> None:
    store = Store.open(site.store_dir)
    made: list[tuple[int, bool]] = []
    barrier = threading.Barrier(8)

    def work(size: int) -> None:
        barrier.wait()
        made.append((size, thumbs.thumbnail(store, tmp_path, site.big_sha, size)[1]))

    threads = [threading.Thread(target=work, args=(size,)) for size in (128, 256) * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    assert sorted(s for s, m in made if m) == [128, 256]
    assert len(made) == 8
    assert sorted(p.name for p in tmp_path.rglob("*.jpg")) == [
        f"{site.big_sha}-128.jpg",
        f"{site.big_sha}-256.jpg",
    ]


def test_pages_only_read(site: Site) -> None:
    with _client(site) as c:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            assert c.request(method, "/explore/p/open/d/Default").status_code == 405
            assert c.request(method, "/explore/p/open/f/1").status_code == 405
    from annostream.server.web import pages

    writes = sorted(r.path for r in pages.router.routes if set(getattr(r, "methods", ())) - {"GET", "HEAD"})
    assert writes == ["/explore/p/{project}/forget", "/explore/p/{project}/key"]


def test_odd_dataset_names_and_project_names_stay_inert(site: Site) -> None:
    from urllib.parse import quote

    with _client(site) as c:
        r = c.get(f"/explore/p/open/d/{quote(ODD)}")
        assert r.status_code == 200 and _count(r.text) == len(site.coco["images"])
        assert "&lt;x&gt;" in r.text
        shown = _tile_ids(r.text)
        nxt = re.search(r'id="more" data-next="([^"]+)"', r.text)
        assert nxt
        page = c.get(nxt.group(1).replace("&amp;", "&"))
        assert page.status_code == 200
        shown += _tile_ids(page.text)
        assert len(shown) == len(set(shown)) == len(site.coco["images"])
        assert page.headers["x-next-page"] == ""
        for name in ("x;Path=%2F", "x%0d%0aSet-Cookie:%20a=1", "x%22y", "-x"):
            r = c.get(f"/explore/p/{name}/")
            assert r.status_code == 404 and "set-cookie" not in r.headers, name
            r = c.post(f"/explore/p/{name}/forget", headers={"Origin": site.url})
            assert r.status_code in (404, 405) and "set-cookie" not in r.headers, name
        c.cookies.set("annostream_key", "garbage", path="/explore/p/open/")
        r = c.get("/explore/p/open/")
        assert r.status_code == 401 and 'id="key-prompt"' in r.text
        assert 'annostream_key=""' in r.headers["set-cookie"]  # the bad cookie is cleared


def test_a_video_file_page_lists_its_instances_by_frame(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from annostream.client.transports import EmbeddedTransport
    from annostream.server import create_app
    from tests.videos import make_video

    local = EmbeddedTransport(tmp_path / "store")
    local.create_project("v", None, True)
    local.create_label("v", "car", None)
    box = {
        "type": "box",
        "label": "car",
        "frame_number": 3,
        "geometry": {"x_min": 1, "y_min": 1, "x_max": 5, "y_max": 5},
    }
    video = local.upload_file("v", "Default", "a.mp4", make_video(12), [box], {})
    with TestClient(create_app(Store.open(tmp_path / "store"), thumbnail_dir=tmp_path / "t")) as c:
        page = c.get(f"/explore/p/v/f/{video['id']}")
        assert page.status_code == 200 and "12 frames" in page.text and "<td>3</td>" in page.text
        grid = c.get("/explore/p/v/d/Default")
        assert _count(grid.text) == 1 and 'class="nopic"' not in grid.text
        first = f"/explore/p/v/frame/{video['sha256']}?number=0&amp;size=256"  # its tile: frame 0
        assert first in grid.text and 'data-frame="3"' not in grid.text  # with frame 0's instances
        assert c.get(first.replace("&amp;", "&")).headers["content-type"] == "image/jpeg"
        assert c.get(f"/explore/p/v/thumb/128/{video['sha256']}").status_code == 404  # no image thumbnail


# --- a video's frames (the scrubber's pictures) --------------------------------------------


def _frame_number_shown(data: bytes) -> int:
    from tests.videos import read_number

    return read_number(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def test_a_video_frame_is_that_frame_as_an_immutable_jpeg(site: Site) -> None:
    sha = site.video["sha256"]
    auth = (site.viewer["client_id"], site.viewer["client_secret"])
    with _with_key(site, "seen", site.viewer) as c:
        for k in (0, 5, VIDEO_FRAMES - 1, 2):  # forward, to the end, and back behind a keyframe
            r = c.get(f"/explore/p/seen/frame/{sha}", params={"number": k})
            assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg", r.text
            assert _frame_number_shown(r.content) == k
            assert r.headers["cache-control"] == "private, max-age=31536000, immutable"
            again = c.get(
                f"/explore/p/seen/frame/{sha}",
                params={"number": k},
                headers={"If-None-Match": r.headers["etag"]},
            )
            assert again.status_code == 304
            api = httpx.get(
                f"{site.url}/api/v2/projects/seen/blobs/{sha}/frame",
                params={"number": k, "size": 1024},
                auth=auth,
            )
            assert api.status_code == 200 and api.content == r.content  # one cached picture for both
        small = c.get(f"/explore/p/seen/frame/{sha}", params={"number": 3, "size": 256})
        assert Image.open(io.BytesIO(small.content)).size == (128, 32)  # never upscaled
    # The embedded transport runs the same operation in-process.
    local = EmbeddedTransport(site.store_dir, site.viewer["client_id"], site.viewer["client_secret"])
    assert _frame_number_shown(local.call("get_frame", project="seen", sha256=sha, number=7)) == 7


def test_frame_requests_are_refused_as_the_api_refuses_them(site: Site) -> None:
    sha = site.video["sha256"]
    image_sha = next(iter_items_shas(site))
    with _with_key(site, "seen", site.viewer) as c:
        for params, status, says in [
            ({"number": VIDEO_FRAMES}, 404, f"it has {VIDEO_FRAMES} frames"),
            ({"number": 2**31}, 422, "number"),
            ({"number": -1}, 422, "number"),
            ({"number": "x"}, 422, "number"),
            ({"number": 1, "size": 300}, 422, "size"),
            ({"number": 1, "size": 4096}, 422, "size"),
        ]:
            r = c.get(f"/explore/p/seen/frame/{sha}", params=params)
            assert r.status_code == status and says in r.text, (params, r.status_code, r.text)
        for other in (image_sha, site.hidden_sha, "0" * 64, "../" + sha):  # no video of this project
            r = c.get(f"/explore/p/seen/frame/{other}", params={"number": 0})
            assert r.status_code == 404, (other, r.text)
        page = c.get(f"/explore/p/seen/f/{site.video['id']}", params={"frame": VIDEO_FRAMES})
        assert page.status_code == 404 and "0..15" in page.text
        assert c.get(f"/explore/p/seen/f/{site.video['id']}", params={"frame": "-1"}).status_code == 422
    url = f"/explore/p/seen/frame/{sha}?number=1"
    api = f"/api/v2/projects/seen/blobs/{sha}/frame?number=1"
    other = (site.other_viewer["client_id"], site.other_viewer["client_secret"])
    with _client(site) as c:
        assert c.get(url).status_code == 401 and c.get(api).status_code == 401
        assert c.get(url, auth=other).status_code == 403 and c.get(api, auth=other).status_code == 403
        c.cookies.set("annostream_key", ":".join(other), path="/explore/p/seen/")
        r = c.get(url)
        assert r.status_code == 403 and r.headers["content-type"].startswith("text/plain")
    foreign = EmbeddedTransport(site.store_dir, *other)
    with pytest.raises(Forbidden):
        foreign.call("get_frame", project="seen", sha256=sha, number=1)


def iter_items_shas(site: Site) -> Iterator[str]:
    """The blobs of the private project's images (not its video)."""
    auth = (site.viewer["client_id"], site.viewer["client_secret"])
    ids = httpx.get(f"{site.url}/api/v2/projects/seen/datasets/Default/ids", auth=auth).content
    found = httpx.post(
        f"{site.url}/api/v2/projects/seen/items:batch",
        json={"ids": list(memoryview(ids).cast("q"))},
        auth=auth,
    ).json()["items"]
    return (i["file"]["sha256"] for i in found)


def test_concurrent_requests_decode_a_frame_once_per_size(site: Site) -> None:
    url = f"{site.url}/explore/p/seen/frame/{site.video['sha256']}"
    auth = (site.viewer["client_id"], site.viewer["client_secret"])
    n = 12
    barrier = threading.Barrier(n)
    results: list[httpx.Response] = []

    def fetch(size: int) -> None:
        with httpx.Client(timeout=60, auth=auth) as c:
            barrier.wait()
            results.append(c.get(url, params={"number": 9, "size": size}))

    threads = [threading.Thread(target=fetch, args=(size,)) for size in (512, 256) * (n // 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [200] * n
    assert sorted(r.headers["x-derived"] for r in results) == ["cached"] * (n - 2) + ["made"] * 2
    assert all(_frame_number_shown(r.content) == 9 for r in results)


def test_the_cache_of_frames_stays_under_its_bound_and_remakes_what_it_dropped(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from annostream.service import derived, dispatch
    from annostream.service.projects import LOCAL

    store = Store.open(site.store_dir)
    store.derived_dir = tmp_path / "cache"
    sha = site.video["sha256"]

    def frame(k: int) -> derived.Picture:
        return dispatch.call(
            store, LOCAL, "get_frame", {"project": "seen", "sha256": sha, "number": k, "size": 256}
        )

    monkeypatch.setattr(derived, "_made_since_sweep", 0)
    monkeypatch.setattr(derived, "SWEEP_EVERY", 4)
    first = frame(0)
    bound = len(first.data) * 6
    monkeypatch.setattr(derived, "MAX_BYTES", bound)
    made = [first.made] + [frame(k).made for k in range(1, VIDEO_FRAMES)]
    assert all(made)  # 16 pictures made, a sweep after every 4th
    kept = {p.name: p.stat().st_size for p in (tmp_path / "cache").rglob("*.jpg")}
    assert sum(kept.values()) <= bound and 0 < len(kept) < VIDEO_FRAMES
    assert not list((tmp_path / "cache").rglob("*.lock")), "no lock file outlives its picture's making"
    dropped = next(k for k in range(VIDEO_FRAMES) if f"{sha}-f{k}-256.jpg" not in kept)
    again = frame(dropped)
    assert again.made and _frame_number_shown(again.data) == dropped
    assert not frame(dropped).made  # cached again
    store.close()
