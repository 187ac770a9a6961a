"""Text files: spans and relations stored, streamed as {text, spans, relations}, exported
and re-imported as JSON, counted by labels.<name>; bad spans refused; on both transports."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from annostream import InvalidInput, Project
from tests.revhelpers import new_project

TRANSPORTS = ["http", "embedded"]
TEXT = "Ada Lovelace worked with Charles Babbage in London. Ünïcode ok."


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format="PNG")
    return out.getvalue()


def span(start: int, end: int, label: str, key: str | None = None) -> dict:
    geometry: dict = {"start": start, "end": end}
    if key:
        geometry["key"] = key
    return {"type": "span", "label": label, "geometry": geometry}


SPANS = [span(0, 12, "person", "ada"), span(25, 40, "person", "cb"), span(44, 50, "place")]
RELATIONS = [{"type": "relation", "label": "worked_with", "geometry": {"from": "ada", "to": "cb"}}]


@pytest.fixture(params=TRANSPORTS)
def writer(request: pytest.FixtureRequest, server_store: tuple[str, Path]) -> Project:
    url, store_dir = server_store
    project = new_project(request.param, url, store_dir, prefix="x", vocabulary=False)
    for name in ("person", "place", "worked_with"):
        project.create_label(name)
    project.upload("docs", data=TEXT.encode(), filename="a.txt", instances=SPANS + RELATIONS)
    project.upload("docs", data=b"no entities here", filename="b.txt")
    return project


def _doc(sample: dict) -> tuple:
    return (
        sample["text"],
        [(s["key"], s["start"], s["end"], s["label"], s["text"]) for s in sample["spans"]],
        [(r["label"], r["from"], r["to"]) for r in sample["relations"]],
    )


WANT = (
    TEXT,
    [
        ("ada", 0, 12, "person", "Ada Lovelace"),
        ("cb", 25, 40, "person", "Charles Babbage"),
        ("s0", 44, 50, "place", "London"),
    ],
    [("worked_with", "ada", "cb")],
)


def test_spans_and_relations_stream(writer: Project) -> None:
    samples = list(writer.dataset("docs"))
    assert _doc(samples[0]) == WANT
    assert _doc(samples[1]) == ("no entities here", [], [])
    torch_ds = writer.dataset("docs").to_pytorch(transform=lambda s: [len(w) for w in s["text"].split()])
    assert torch_ds[1] == [2, 8, 4]


def test_json_export_and_reimport_round_trip(writer: Project, tmp_path: Path) -> None:
    writer.dataset("docs").export(tmp_path / "out", "json")
    assert writer.import_format("json", tmp_path / "out", dataset="copy")["files"] == 2
    assert [_doc(s) for s in writer.dataset("copy")] == [_doc(s) for s in writer.dataset("docs")]


def test_labels_count_spans(writer: Project) -> None:
    ds = writer.dataset("docs")
    assert [s["file"]["name"] for s in ds.slice("labels.person = 2")] == ["a.txt"]
    assert [s["file"]["name"] for s in ds.slice("labels.place = 0")] == ["b.txt"]
    assert ds.slice("labels.worked_with > 0").count() == 0  # relations are links, not labels of the text


def test_relations_added_later_name_existing_spans(writer: Project) -> None:
    file_id = int(writer.dataset("docs").ids[0])
    writer.write_instances(
        file_id, [{"type": "relation", "label": "worked_with", "geometry": {"from": "cb", "to": "s0"}}]
    )
    assert len(writer.dataset("docs")[0]["relations"]) == 2
    with pytest.raises(InvalidInput, match="no span with key 'nope'"):
        writer.write_instances(
            file_id, [{"type": "relation", "label": "worked_with", "geometry": {"from": "nope", "to": "cb"}}]
        )
    with pytest.raises(InvalidInput, match="already used"):
        writer.write_instances(file_id, [span(1, 2, "person", "ada")])


def test_span_past_the_end_is_422(writer: Project) -> None:
    with pytest.raises(InvalidInput) as err:
        writer.upload("docs", data=b"short", filename="c.txt", instances=[span(0, 6, "person")])
    assert err.value.status == 422 and "past the end of the text (5 characters)" in str(err.value)
    file_id = int(writer.dataset("docs").ids[1])
    for bad in (span(3, 100, "place"), span(4, 2, "place"), span(0, 3, "no-such-label")):
        with pytest.raises(InvalidInput):
            writer.write_instances(file_id, [bad])
    with pytest.raises(InvalidInput, match="belongs to a text"):
        writer.upload("imgs", data=_png(), filename="v.png", instances=[span(0, 1, "person")])
    assert len(writer.dataset("docs")) == 2
