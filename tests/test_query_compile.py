"""Compiling against a project: names checked before SQL, useful 400s, parameterised SQL,
and random queries executed against a real store only ever failing with a QueryError."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from annostream.errors import QueryError
from annostream.query import parse
from annostream.query.compile import Compiler
from annostream.service.datasets import slice_count, slice_ids
from annostream.store.tables import files
from tests.test_query_reference import World, build_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    w = build_world(tmp_path_factory.mktemp("compile"), 7)
    yield w
    assert w.store is not None
    w.store.close()


def run(world: World, text: str) -> list[int]:
    assert world.store is not None
    return slice_ids(world.store, world.ds("train"), text)[0].tolist()


def fails(world: World, text: str) -> QueryError:
    with pytest.raises(QueryError) as info:
        run(world, text)
    assert info.value.status == 400
    return info.value


def test_unknown_label_suggests(world: World) -> None:
    e = fails(world, "labels.cta > 2")
    assert e.detail["unknown"] == "cta" and e.detail["kind"] == "label"
    assert "cat" in e.detail["did_you_mean"]
    assert "did you mean 'cat'?" in e.message or "did you mean 'Cat'?" in e.message
    assert (e.detail["line"], e.detail["column"]) == (1, 1)


def test_unknown_attribute_group_and_option(world: World) -> None:
    e = fails(world, "attributes.wether = rain")
    assert e.detail["kind"] == "attribute" and e.detail["did_you_mean"] == ["weather"]
    e = fails(world, "attributes.weather = rian")
    assert e.detail["kind"] == "option" and e.detail["did_you_mean"] == ["rain"]


def test_unknown_instance_type_and_dataset_field(world: World) -> None:
    e = fails(world, "instances.boxes > 1")
    assert e.detail["kind"] == "field" and "box" in e.detail["did_you_mean"]
    e = fails(world, "dataset.nmae in [train]")
    assert e.detail["did_you_mean"] == ["name"]


def test_unknown_dataset(world: World) -> None:
    e = fails(world, "dataset.name in [trian]")
    assert e.detail["kind"] == "dataset" and e.detail["did_you_mean"] == ["train"]
    assert fails(world, "dataset.id in [99999]").detail["kind"] == "dataset"


@pytest.mark.parametrize(
    "text",
    [
        'labels.cat > "many"',
        "labels.cat > true",
        "file.width >= wide",
        "file.created_at > 3",
        "file.created_at > yesterday",
        "file.metadata.flag > true",
        "attributes.weather > rain",
        "attributes.score = high",
        "dataset.id > 1",
        "file.width",
        "file.metadata.split",
        "file.metadata = 1",
        'labels."a.b".c > 1',
        "instances.box.count.x > 1",
        'file.metadata."a\\"b" = 1',
    ],
)
def test_type_errors_are_400(world: World, text: str) -> None:
    fails(world, text)


def test_numbers_may_be_quoted_for_counts(world: World) -> None:
    assert run(world, 'labels.cat > "1"') == run(world, "labels.cat > 1")


def test_dates(world: World) -> None:
    everything = run(world, "file.id > 0")
    late = run(world, 'file.created_at >= "2024-01-10"')
    early = run(world, 'file.created_at < "2024-01-10T00:00:00Z"')
    assert sorted(late + early) == everything and late and early


def test_dataset_name_and_bare_membership(world: World) -> None:
    assert run(world, "dataset.train") == run(world, "file.id > 0")
    assert run(world, 'dataset."All Data"') == run(world, "dataset.tag in ['all data']")


def test_count_matches_ids(world: World) -> None:
    assert world.store is not None
    for text in [
        "labels.cat > 0",
        "labels.cat = 0 or instances.count >= 3",
        "attributes.tags = a and not file.type = video",
    ]:
        count, _ = slice_count(world.store, world.ds("train"), text)
        assert count == len(run(world, text))


def test_sql_is_parameterised(world: World) -> None:
    """Values and names reach the database as bound parameters, on both dialects."""
    assert world.store is not None
    text = (
        "labels.cat > 2 and file.name = \"x' OR 1=1\" and file.metadata.\"k' --\" = 'v'"
        " and attributes.tags = a and attributes.weather in [rain] and dataset.name = val"
        " and instances.box >= 1 and labels.CAT = 0 and attributes.score > 1"
    )
    with world.store.engine.connect() as conn:
        for dialect_name, dialect in (("sqlite", sqlite.dialect()), ("postgresql", postgresql.dialect())):
            compiler = Compiler(conn, world.project.id, 3)
            compiler.json.dialect = dialect_name
            stmt = select(files.c.id).where(compiler.compile(parse(text)))
            sql = str(stmt.compile(dialect=dialect))
            assert "OR 1=1" not in sql and "k' --" not in sql and "'v'" not in sql
            assert "'rain'" not in sql and "'val'" not in sql and "'a'" not in sql


# --------------------------------------------------------------- fuzz against the store

WORDS = st.sampled_from(
    [
        "labels.",
        "label.",
        "file.",
        "metadata.",
        "attributes.",
        "attribute.",
        "instances.",
        "dataset.",
        "cat",
        "Cat",
        "traffic_light",
        '"traffic light"',
        "weather",
        "tags",
        "score",
        "note",
        "rain",
        "a",
        "split",
        "width",
        "name",
        "id",
        "tag",
        "count",
        "box",
        "created_at",
        " = ",
        " != ",
        " < ",
        " >= ",
        " and ",
        " or ",
        " not ",
        " in ",
        "[",
        "]",
        ", ",
        "(",
        ")",
        "3",
        "-1",
        "2.5",
        "true",
        '"x"',
        "'2024-01-01'",
        " ",
        '"\'; DROP TABLE files; --"',
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(WORDS, min_size=1, max_size=12).map("".join))
def test_fuzz_against_store(world: World, text: str) -> None:
    try:
        ids = run(world, text)
    except QueryError as e:
        assert e.status == 400
    else:
        assert ids == sorted(ids)


def test_field_alone(world: World) -> None:
    everything = set(run(world, "file.id > 0"))
    with_weather = set(run(world, "attributes.weather"))
    assert with_weather == set(run(world, "attributes.weather in [rain, sun, fog]"))
    assert with_weather < everything
    assert set(run(world, "instances.box")) == set(run(world, "instances.box.count >= 1"))
    assert set(run(world, "labels.cat")) == set(run(world, "not labels.cat = 0"))


def test_sql_injection_in_names_is_a_400(world: World) -> None:
    assert fails(world, 'labels."cat\' OR 1=1 --" > 0').detail["kind"] == "label"
    assert fails(world, 'attributes."weather\' OR 1=1 --" = rain').detail["kind"] == "attribute"
