"""Every bounded text column of the store has its bound at the edge: an over-long value is a
4xx naming its field on both stacks, never a 500 from PostgreSQL (which refuses it) nor a
silent over-long row in SQLite (which stores it).

``test_every_bounded_column_is_accounted_for`` walks the SQLAlchemy tables: each ``String(n)``
column must be fed either by an edge check (``EDGE``: the check refuses ``n + 1`` characters
and accepts ``n``, so the bound matches the column), or only by values the server makes
(``SERVER_MADE``, each a closed set or a fixed format that fits, checked here too). A new
bounded column without either fails it. The other tests send over-long values to a real
server on both stacks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

import pytest
from pydantic import ValidationError
from sqlalchemy import String

from annostream.errors import InvalidInput
from annostream.operations import OPERATIONS
from annostream.paths import safe_name
from annostream.schema import (
    AttributeGroupCreate,
    AttributeKind,
    DatasetCreate,
    FileType,
    InstanceType,
    LabelCreate,
    ProjectCreate,
    Role,
    TagCreate,
    dataset_name,
    validate,
)
from annostream.service.projects import create_server_admin_key
from annostream.store import Store
from annostream.store.tables import metadata
from tests.security.conftest import World, basic

BOUNDED = {
    f"{table.name}.{column.name}": column.type.length
    for table in metadata.sorted_tables
    for column in table.columns
    if isinstance(column.type, String) and column.type.length
}

# Column -> a check at the edge, called with a value made of characters it otherwise accepts.
EDGE: dict[str, Callable[[str], Any]] = {
    "projects.string_id": lambda v: validate(ProjectCreate, {"string_id": v}),
    "projects.name": lambda v: validate(ProjectCreate, {"string_id": "p", "name": v}),
    "revision_tags.name": lambda v: validate(TagCreate, {"name": v}),
    "datasets.name": lambda v: (validate(DatasetCreate, {"name": v}), dataset_name(v, "dataset")),
    "labels.name": lambda v: validate(LabelCreate, {"name": v}),
    "labels.color": lambda v: validate(LabelCreate, {"name": "cat", "color": v}),
    "attribute_groups.name": lambda v: validate(AttributeGroupCreate, {"name": v}),
    "attribute_options.name": lambda v: validate(AttributeGroupCreate, {"name": "g", "options": [v]}),
    # Instance attributes must name an attribute group (service/labels.check_attributes),
    # so the index's keys are bounded as group names are.
    "file_attribute_values.key": lambda v: validate(AttributeGroupCreate, {"name": v}),
    # The per-dataset counts copy the index's keys.
    "dataset_counts.key": lambda v: validate(AttributeGroupCreate, {"name": v}),
    # Parts of a name are at most 255 bytes: a slash every 100 characters keeps them short.
    "files.original_filename": lambda v: safe_name(
        "".join("/" if i % 100 == 99 else c for i, c in enumerate(v)), "file"
    ),
    "import_keys.key": lambda v: OPERATIONS["import_coco"].bind({"project": "p", "dataset": "d", "key": v}),
}

# Column -> the closed set of values the server writes there, or a value of the widest format.
SERVER_MADE: dict[str, tuple[str, ...]] = {
    "api_keys.role": get_args(Role),
    "api_keys.client_id": ("as_" + "0" * 16,),  # service/projects: "as_" + 8 random bytes in hex
    "api_keys.secret_hash": ("0" * 64,),  # sha256 hex
    "blobs.sha256": ("0" * 64,),
    "files.blob_sha256": ("0" * 64,),
    "staged_blobs.sha256": ("0" * 64,),
    "files.type": get_args(FileType),
    "instances.type": get_args(InstanceType),
    "attribute_groups.kind": get_args(AttributeKind),
    "file_attribute_values.kind": ("true", "false", "number", "text", "null", "array", "item", "object"),
    "dataset_counts.kind": ("true", "false", "number", "text", "null", "array", "item", "object"),
    # Sniffed from the bytes (service/ingest, service/video): the longest the server names.
    "blobs.content_type": ("application/octet-stream", "video/x-matroska", "text/plain; charset=utf-8"),
    # FFmpeg's short codec names, never the uploader's text.
    "files.codec": ("h264", "hevc", "mpeg4", "vp9", "av1", "prores"),
    # versioning.begin_commit cuts the message (it quotes names) to the column.
    "revisions.message": ("x" * 200,),
    # Never written (kept for Diffgram schemas).
    "labels.schema_name": (),
}


def test_every_bounded_column_is_accounted_for() -> None:
    assert set(BOUNDED) == set(EDGE) | set(SERVER_MADE), "a bounded column without a bound at the edge"
    assert not set(EDGE) & set(SERVER_MADE)


@pytest.mark.parametrize("column", sorted(EDGE))
def test_the_edge_bound_matches_the_column(column: str) -> None:
    n = BOUNDED[column]
    check = EDGE[column]
    check("a" * n)  # the full width of the column is accepted ("a": a character every check takes)
    with pytest.raises((InvalidInput, ValidationError)):
        check("a" * (n + 1))


@pytest.mark.parametrize("column", sorted(SERVER_MADE))
def test_server_made_values_fit_their_column(column: str) -> None:
    assert all(len(value) <= BOUNDED[column] for value in SERVER_MADE[column]), SERVER_MADE[column]


def test_commit_messages_are_cut_to_their_column(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from annostream.service.labels import create_label
    from annostream.service.projects import LOCAL, authorize, create_project

    store = Store.open(tmp_path / "s")
    try:
        create_project(store, LOCAL, ProjectCreate(string_id="p"))
        ref = authorize(store, LOCAL, "p", "admin")
        create_label(store, ref, LabelCreate(name="n" * 200))  # its commit message is "label " + name
        from sqlalchemy import select

        from annostream.store.tables import revisions

        with store.engine.connect() as conn:
            messages = conn.execute(select(revisions.c.message)).scalars().all()
        assert max(len(m) for m in messages) == BOUNDED["revisions.message"]
    finally:
        store.close()


P = "/api/v2/projects/priv"
LONG = "a" * 201


def _png() -> bytes:
    from tests.security.test_bad_input import png

    return png()


@pytest.mark.parametrize(
    "role, method, path, kwargs, field",
    [
        ("editor", "POST", f"{P}/labels", {"json": {"name": "c1", "color": "#" + "a" * 16}}, "color"),
        ("editor", "POST", f"{P}/labels", {"json": {"name": "c2", "color": "red;x"}}, "color"),
        ("editor", "POST", f"{P}/labels", {"json": {"name": LONG}}, "name"),
        ("editor", "POST", f"{P}/attribute_groups", {"json": {"name": "g1", "options": [LONG]}}, "options.0"),
        ("editor", "POST", f"{P}/datasets", {"json": {"name": LONG}}, "name"),
        ("editor", "POST", f"{P}/tags", {"json": {"name": "t" * 101}}, "name"),
        ("superuser", "POST", "/api/v2/projects", {"json": {"string_id": "longname", "name": LONG}}, "name"),
        ("superuser", "POST", "/api/v2/projects", {"json": {"string_id": "p" * 101}}, "string_id"),
        (
            "editor",
            "POST",
            f"{P}/datasets/Default/import",
            {
                "json": {"images": [], "annotations": [], "categories": []},
                "headers": {"Idempotency-Key": LONG},
            },
            "key",
        ),
    ],
)
def test_over_long_values_are_422_naming_the_field(
    world: World, role: str, method: str, path: str, kwargs: dict[str, Any], field: str
) -> None:
    key = world_superuser(world) if role == "superuser" else world.keys[f"priv:{role}"]
    sent = dict(kwargs)  # the parameters are shared by both stacks' runs: never changed
    headers = {**basic(key), **sent.pop("headers", {})}
    with world.client() as http:
        r = http.request(method, path, headers=headers, **sent)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["detail"]["field"] == field, r.text


def world_superuser(world: World) -> dict[str, str]:
    if "superuser" not in world.keys:
        store = Store.open(world.store_dir)
        try:
            world.keys["superuser"] = create_server_admin_key(store)
        finally:
            store.close()
    return world.keys["superuser"]


@pytest.mark.parametrize(
    "instance, field",
    [
        ({"type": "box", "label": "n" * 201, "geometry": {"x": 1, "y": 1, "w": 2, "h": 2}}, "label"),
        ({"type": "tag", "label": "cat", "frame_number": 2**31}, "frame_number"),
        ({"type": "tag", "label": "cat", "track_id": 2**31}, "track_id"),
    ],
)
def test_over_long_or_wide_instance_values_are_422(
    world: World, instance: dict[str, Any], field: str
) -> None:
    with world.client() as http:
        r = http.post(
            f"{P}/files/{world.file_ids['priv']}/instances",
            headers=basic(world.keys["priv:editor"]),
            json={"instances": [instance]},
        )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["detail"]["field"].endswith(field), r.text


def test_upload_name_over_the_column_is_422(world: World) -> None:
    with world.client() as http:
        r = http.post(
            f"{P}/datasets/Default/files",
            headers=basic(world.keys["priv:editor"]),
            files={"file": ("d" * 200 + "/" + "d" * 200 + "/" + "f" * 95 + ".png", _png(), "image/png")},
        )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["detail"]["field"] == "file", r.text
    assert "longer than 500" in r.json()["error"]["message"]
