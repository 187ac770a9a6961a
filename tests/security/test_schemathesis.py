"""Schemathesis against our own ``/openapi.json``, on both stacks: no request it generates gets
a 500, and every response conforms to the schema (status codes, content types, bodies).

Request bodies are documented from the declarations (``api_v2.documented``), so they are
generated too. It runs against a store of its own (what it writes cannot disturb other
tests), with the project's admin key, and with the ``project`` path parameter pinned to that project so the
generated requests reach past the project lookup. Examples per operation are bounded.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from annostream.client.transports import EmbeddedTransport
from annostream.formats.coco import read_coco
from annostream.server.app import create_app
from annostream.server.launch import running_server
from annostream.store import Store
from tests.conftest import make_coco
from tests.security.conftest import basic

MAX_EXAMPLES = 6
# Excluded: whether a schema-valid request is accepted and an invalid one refused. Those judge
# meaning, not conformance: a valid-looking id that names nothing is rightly a 404, and
# unknown query parameters are ignored (as Diffgram's SDK relies on). Everything else runs:
# no 5xx, status codes, content types, headers and bodies as documented, Allow on 405.
SEMANTIC = [positive_data_acceptance, negative_data_rejection]


@pytest.fixture(scope="session")
def fuzz_target(
    tmp_path_factory: pytest.TempPathFactory, new_store_dir: Callable[[Path], Path]
) -> Iterator[tuple[str, dict[str, str]]]:
    root = tmp_path_factory.mktemp("fuzz")
    store_dir = new_store_dir(root / "store")
    local = EmbeddedTransport(store_dir)
    admin = local.create_project("fuzz", None, True)["admin_key"]
    ann = make_coco(root / "coco", 3, seed=3)
    local.import_source(
        "fuzz", "Default", read_coco(json.loads(ann.read_text()), root / "coco" / "images"), "coco"
    )
    with running_server(store_dir) as url:
        yield url, admin


def _openapi() -> dict:  # type: ignore[type-arg]
    """The document every server of this code serves at /openapi.json (it depends on no data)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(tmp)
        try:
            return create_app(store).openapi()
        finally:
            store.close()


@schemathesis.serializer("application/x-ndjson")
def _ndjson(_ctx, value) -> bytes:  # type: ignore[no-untyped-def]
    """An NDJSON import body: a generated string as it is, anything else as one JSON line."""
    return value.encode() if isinstance(value, str) else json.dumps(value).encode() + b"\n"


schema = schemathesis.openapi.from_dict(_openapi())


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_500_and_responses_conform(case, fuzz_target) -> None:  # type: ignore[no-untyped-def]
    url, admin = fuzz_target
    if case.path_parameters and "project" in case.path_parameters:
        case.path_parameters["project"] = "fuzz"
    case.call_and_validate(base_url=url, headers=basic(admin), excluded_checks=SEMANTIC)
