"""Slices through the SDK, the wire and the CLI: the server evaluates, only matches stream."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
from typer.testing import CliRunner

from annostream import Project, QueryError
from annostream.cli import app
from tests.conftest import Source


def _cat_counts(source: Source) -> dict[str, int]:
    names = {img["id"]: img["file_name"] for img in source.coco["images"]}
    counts: Counter[str] = Counter()
    for a in source.coco["annotations"]:
        if a["category_id"] == 1:
            counts[names[a["image_id"]]] += 1
    return {name: counts[name] for name in names.values()}


def test_slice_matches_the_source(project: Project, source: Source) -> None:
    cats = _cat_counts(source)
    ds = project.dataset("Default")
    view = ds.slice("labels.cat >= 1")
    want = sorted(n for n, c in cats.items() if c >= 1)
    assert len(view) == len(want) == view.count()
    assert sorted(s["file"]["name"] for s in view) == want
    none = ds.slice("labels.cat = 0")
    assert len(none) + len(view) == len(ds)


def test_slices_compose_and_index(project: Project, source: Source) -> None:
    ds = project.dataset("Default")
    both = ds.slice("labels.cat > 0").slice('labels."traffic light" > 0')
    direct = ds.slice('labels.cat > 0 and labels."traffic light" > 0')
    assert list(both.ids) == list(direct.ids)
    head = ds[:20].slice("labels.cat > 0")
    assert set(head.ids) <= set(ds.ids[:20]) and set(head.ids) <= set(ds.slice("labels.cat > 0").ids)
    if len(direct):
        assert direct[-1]["file"]["id"] == direct.ids[-1]


def test_bad_query_raises_with_position(project: Project) -> None:
    ds = project.dataset("Default")
    with pytest.raises(QueryError) as info:
        len(ds.slice("labels.cat > > 2"))
    assert info.value.detail["line"] == 1 and info.value.detail["column"] == 14
    with pytest.raises(QueryError, match="did you mean 'cat'"):
        len(ds.slice("labels.cta > 1"))


def test_bad_query_over_http_is_400(source: Source) -> None:
    v = source.viewer
    r = httpx.get(
        f"{source.url}/api/v2/projects/coco-dataset/datasets/Default/ids",
        params={"query": "labels.cat >"},
        auth=(v["client_id"], v["client_secret"]),
    )
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "bad_query" and {"line", "column", "expected"} <= set(err["detail"])


def test_cli_query(source: Source) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["query", "coco-dataset", "Default", "labels.cat > 0", "--count", "--data", str(source.store_dir)],
    )
    assert result.exit_code == 0, result.output
    want = sum(1 for c in _cat_counts(source).values() if c > 0)
    assert f"{want} files match" in result.output
