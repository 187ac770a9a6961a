"""The server's time split (store/timings.py): only with ANNOSTREAM_TIMINGS=1, on both stacks."""

from __future__ import annotations

from typing import Any

import httpx

from annostream.client.transports import HttpTransport
from annostream.server.launch import running_server
from annostream.store.timings import ENV
from tests.conftest import Source


def test_the_route_is_absent_by_default(source: Source) -> None:
    reply = httpx.get(f"{source.url}/debug/timings")
    assert reply.status_code == 404
    assert "/debug/timings" not in httpx.get(f"{source.url}/openapi.json").text


def test_a_server_with_timings_splits_its_time_by_phase(source: Source) -> None:
    with running_server(source.store_dir, env={ENV: "1"}) as url:
        before = httpx.get(f"{url}/debug/timings").json()
        key = source.viewer
        transport = HttpTransport(url, key["client_id"], key["client_secret"])
        ids = transport.ids("coco-dataset", "Default", None, None)[0].tolist()
        pairs = transport.items("coco-dataset", ids, None, True)
        transport.items("coco-dataset", ids, None, False)
        after = httpx.get(f"{url}/debug/timings").json()
    grew = {p: after[p]["count"] - before[p]["count"] for p in ("request", "database", "object_store")}
    assert grew["object_store"] == sum(1 for _, blob in pairs if blob is not None) == len(ids)
    assert grew["database"] >= 4 and grew["request"] >= 3  # ids, two batches (+ this route)
    assert after["framing"]["count"] - before["framing"]["count"] >= 2  # framed, then JSON
    for phase in ("request", "database", "object_store", "framing", "cpu"):
        assert after[phase]["seconds"] > before[phase]["seconds"] >= 0


def test_only_a_peer_on_loopback_reads_the_timings(source: Source, monkeypatch: Any) -> None:
    """Timings cover every project and ask for no key: another machine gets 403, not the sums."""
    from fastapi.testclient import TestClient

    from annostream.server.app import create_app
    from annostream.store import Store, timings

    monkeypatch.setattr(timings, "ENABLED", True)
    app = create_app(Store.open(source.store_dir))
    for peer, status in (("203.0.113.9", 403), ("testclient", 403), ("::1", 200), ("127.0.0.1", 200)):
        with TestClient(app, client=(peer, 50000)) as client:
            reply = client.get("/debug/timings")
        assert reply.status_code == status, (peer, reply.text)
        assert ("request" in reply.json()) == (status == 200)
        if status == 403:
            assert reply.json()["error"]["code"] == "forbidden"
