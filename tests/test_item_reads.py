"""Items as the server encodes them (``wire_items``: stored JSON columns kept as their text) are
the items as read (plain values), byte for byte, on both stacks: images, videos with tracks,
events and keyframes, text with spans, attributes, metadata of every JSON kind, at head and
at an earlier revision. And the statements read through the driver's cursor
(``driver_rows``) keep what every statement has: the statement timeout, SQLAlchemy's errors,
also when several go together (one pipeline on PostgreSQL), after which the connection
still answers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, Integer, bindparam, func, literal, select
from sqlalchemy.exc import DBAPIError

from annostream import frames
from annostream.client.transports import EmbeddedTransport
from annostream.service.items import read_batch, read_items
from annostream.service.projects import LOCAL, authorize
from annostream.store import Store, db
from annostream.store.db import create_db_engine, driver_rows, is_timeout, reading
from tests.revhelpers import box, png
from tests.videos import make_video

METADATA = {
    "caption": 'ein Café, 東京 \u2028 "quoted" \\ back',
    "floats": [0.1, 1e-07, 123456789.123, -0.0, 2.5e20],
    "nested": {"a": [1, None, True, False, {"b": []}], "empty": {}},
    "big": 2**53 + 1,
}
VIDEO_INSTANCES = [
    box(0, 0, 20, 10, frame_number=10, track_id=1),
    box(40, 10, 80, 30, frame_number=0, track_id=1),
    box(1, 1, 5, 5, "dog", frame_number=5),
    box(50, 5, 60, 15, frame_number=7, track_id=1, keyframe=False),
    {"type": "event", "label": "cat", "geometry": {"start": 3, "end": 12}},
]


def _encoded(items: list) -> list[bytes]:
    return [frames.encode_header(item, 0) for item in items]


def test_wire_items_encode_as_the_items_read(tmp_path: Path, new_store_dir: Callable[[Path], Path]) -> None:
    store_dir = new_store_dir(tmp_path / "store")
    local = EmbeddedTransport(store_dir, create=True)
    local.create_project("p", None, False)
    for name in ("cat", "dog", "person"):
        local.create_label("p", name, None)
    local.create_attribute_group("p", "weather", "select", ["rain", "sün"])
    image = local.upload_file(
        "p",
        "Default",
        "a.png",
        png(),
        [
            box(0.1, 1e-07, 33.333333333333336, 48, attributes={"weather": "sün"}),
            box(1, 2, 3, 4, "dog", iscrowd=True),
            {"type": "polygon", "label": "cat", "geometry": {"points": [[0.5, 0.25], [10, 0], [3.75, 9]]}},
            {"type": "tag", "label": "dog", "attributes": {"weather": "rain"}},
        ],
        METADATA,
    )["id"]
    plain = local.upload_file("p", "Default", "b.png", png(8, 8), [], {})["id"]
    video = local.upload_file("p", "Default", "v.mp4", make_video(16), VIDEO_INSTANCES, {"fps_hint": 25.0})[
        "id"
    ]
    text = local.upload_file(
        "p",
        "Default",
        "t.txt",
        b"Ada met Bob",
        [{"type": "span", "label": "person", "geometry": {"start": 0, "end": 3, "key": "ada"}}],
        {},
    )["id"]
    ids = [text, video, image, plain]
    store = Store.open(store_dir)
    ref = authorize(store, LOCAL, "p", "viewer")
    before = ref.head_rev
    local.write_instances("p", image, [box(5, 5, 6, 6, "dog")], replace=False)
    ref = authorize(store, LOCAL, "p", "viewer")
    try:
        for as_of in (None, before):
            for blobs in ("none", "url", "inline"):
                batch = read_batch(store, ref, ids, as_of, blobs)
                assert _encoded(batch.wire_items) == _encoded(batch.items)
                # The stored text goes out as it is, on PostgreSQL too (no decode, no encode).
                wired = {item["id"]: item for item in batch.wire_items}[image]
                assert isinstance(wired["file"]["metadata"], orjson.Fragment)
                assert all(isinstance(i["geometry"], orjson.Fragment) for i in wired["instances"])
            items, _ = read_items(store, ref, ids, as_of)
            assert [item["id"] for item in items] == ids
            assert _encoded(items) == _encoded(read_batch(store, ref, ids, as_of, "none").wire_items)
            for item in items:
                inst_ids = [inst["id"] for inst in item["instances"]]
                assert inst_ids == sorted(inst_ids)  # in id order, whatever the frame numbers
                for inst in item["instances"]:
                    assert isinstance(inst["iscrowd"], bool) and isinstance(inst["machine_made"], bool)
                    assert inst["keyframe"] is None or isinstance(inst["keyframe"], bool)
        items, _ = read_items(store, ref, [image, video])
        assert items[0]["file"]["metadata"] == METADATA
        assert [i["iscrowd"] for i in items[0]["instances"]][:2] == [False, True]
        assert [i["frame_number"] for i in items[1]["instances"]] == [10, 0, 5, 7, None]
        assert [i["keyframe"] for i in items[1]["instances"]][3] is False
        assert len(read_items(store, ref, [image], before)[0][0]["instances"]) == 4
        assert len(items[0]["instances"]) == 5
    finally:
        store.close()


def _counting(n: int) -> object:
    """A statement that steps SQLite's virtual machine about ``n`` times per row counted."""
    steps = select(literal(1).label("x")).cte("steps", recursive=True)
    steps = steps.union_all(select(steps.c.x + 1).where(steps.c.x < n))
    return select(func.count()).select_from(steps)


@contextlib.contextmanager
def _engine(stack: str, tmp_path: Path, request: pytest.FixtureRequest, **options: Any) -> Iterator[Engine]:
    """An engine on a fresh database of the stack: a SQLite file, or a database on the tests'
    PostgreSQL; disposed after."""
    if stack == "pg":
        url = str(request.getfixturevalue("services").create_database())
    else:
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = create_db_engine(url, **options)
    try:
        yield engine
    finally:
        engine.dispose()


def test_driver_rows_keep_the_statement_timeout(
    stack: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with _engine(stack, tmp_path, request, statement_timeout_s=0.5) as engine:
        with engine.connect() as conn:
            assert driver_rows(conn, [(_counting(10), {})]) == [[(10,)]]
            time.sleep(0.6)  # the last statement's deadline has passed: the next one starts its own
            assert driver_rows(conn, [(_counting(100_000), {})]) == [[(100_000,)]]
            with pytest.raises(DBAPIError) as caught:
                driver_rows(conn, [(_counting(2 * 10**9), {})])  # minutes of work; fits an int4
            assert is_timeout(caught.value)
        with reading(engine) as conn:  # as items are read: no transaction of their own
            with pytest.raises(DBAPIError) as caught:  # the second of two sent together
                driver_rows(conn, [(_counting(10), {}), (_counting(2 * 10**9), {})])
            assert is_timeout(caught.value)
            assert driver_rows(conn, [(_counting(3), {}), (_counting(4), {})]) == [[(3,)], [(4,)]]


def test_driver_rows_sent_together_answer_each_in_order(
    stack: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with _engine(stack, tmp_path, request) as engine, engine.connect() as conn:
        assert db._pipelines(conn) == (stack == "pg")  # the path under test on each stack
        runs = [(_counting(3), {}), (select(literal(7).label("x")), {}), (_counting(5), {})]
        assert driver_rows(conn, runs) == [[(3,)], [(7,)], [(5,)]]
        assert driver_rows(conn, []) == []
        with_params = select(bindparam("a", type_=Integer) + bindparam("b", type_=Integer))
        assert driver_rows(conn, [(with_params, {"a": 1, "b": 2}), (with_params, {"a": 3, "b": 4})]) == [
            [(3,)],
            [(7,)],
        ]


def test_driver_rows_raise_sqlalchemy_errors_and_refuse_expanding_lists(
    stack: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from sqlalchemy import column, table

    # as items are read: no transaction of their own
    with _engine(stack, tmp_path, request) as engine, reading(engine) as conn:
        missing = select(column("x")).select_from(table("missing"))
        with pytest.raises(DBAPIError):
            driver_rows(conn, [(missing, {})])
        for together in ([(missing, {}), (_counting(2), {})], [(_counting(2), {}), (missing, {})]):
            with pytest.raises(DBAPIError, match="missing"):
                driver_rows(conn, together)
            assert driver_rows(conn, [(_counting(5), {})]) == [[(5,)]]  # the connection still answers
        expanding = select(literal(1)).where(literal(1).in_(bindparam("ids", expanding=True)))
        with pytest.raises(ValueError, match="expanding"):
            driver_rows(conn, [(expanding, {"ids": [1]})])
