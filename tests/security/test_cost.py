"""Bounded cost: a query budget, a statement timeout, /healthz answering beside a heavy
query, caps on concurrent long polls per caller and per server process, repeated ids served
once (issue 13)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from annostream import frames
from annostream.server.launch import running_server
from annostream.store.db import create_db_engine, is_timeout
from benchmarks.data import build_metadata
from tests.security.conftest import LONG_POLLS, LONG_POLLS_PER_PROCESS, World, basic

HEAVY = " or ".join(["instances.count > 99"] * 200)  # inside the parser's limits, as in the issue


def test_query_over_budget_is_refused_before_running(world: World) -> None:
    with world.client() as http:
        r = http.get("/api/v2/projects/pub/datasets/Default/count", params={"query": HEAVY})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["code"] == "too_costly" and error["detail"]["cost"] > error["detail"]["budget"]
        within = " or ".join(["instances.count > 99"] * 4)
        r = http.get("/api/v2/projects/pub/datasets/Default/count", params={"query": within})
        assert r.status_code == 200 and r.json()["count"] == 0


@pytest.fixture(scope="module")
def heavy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A SQLite store of 5,000 files, served with a budget the heavy query fits in and a
    short statement timeout."""
    built = build_metadata(Path(tmp_path_factory.mktemp("heavy")) / "store", 5000, 3)
    env = {"ANNOSTREAM_QUERY_BUDGET": "100000", "ANNOSTREAM_STATEMENT_TIMEOUT_S": "2"}
    with running_server(built.store, env=env) as url:
        yield url, built.key


def test_statement_timeout_answers_4xx_and_healthz_answers_meanwhile(
    heavy: tuple[str, dict[str, str]],
) -> None:
    url, key = heavy
    answer: list[httpx.Response] = []
    worker = threading.Thread(
        target=lambda: answer.append(
            httpx.get(
                f"{url}/api/v2/projects/bench/datasets/Default/count",
                params={"query": HEAVY},
                headers=basic(key),
                timeout=120,
            )
        )
    )
    worker.start()
    time.sleep(0.3)  # let the query reach the database
    probes = []
    for _ in range(3):
        t0 = time.monotonic()
        r = httpx.get(f"{url}/healthz", timeout=5)
        probes.append((time.monotonic() - t0, worker.is_alive(), r.status_code))
        time.sleep(0.1)
    worker.join(120)
    assert probes[0][1], "the heavy query finished before /healthz was asked: make it heavier"
    assert all(status == 200 and seconds < 1.0 for seconds, _, status in probes), probes
    r = answer[0]
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "too_costly" and "timeout" in r.json()["error"]["message"]


def test_pg_statement_timeout(services) -> None:  # type: ignore[no-untyped-def]
    engine = create_db_engine(services.pg_url, statement_timeout_s=0.1)
    try:
        with pytest.raises(DBAPIError) as caught, engine.connect() as conn:
            conn.execute(text("SELECT pg_sleep(3)"))
        assert is_timeout(caught.value)
    finally:
        engine.dispose()


def test_long_polls_are_capped_per_caller(world: World) -> None:
    key = basic(world.keys["pub:viewer"])
    with world.client() as http:
        head = http.get("/api/v2/projects/pub", headers=key).json()["revision"]
        params = {"since": head, "wait": 20}  # long enough to be seen on a loaded machine
        held: list[object] = []

        def hold() -> None:
            try:
                r = httpx.get(
                    f"{world.url}/api/v2/projects/pub/changes", params=params, headers=key, timeout=30
                )
                held.append((r.status_code, r.text[:200]))
            except httpx.HTTPError as exc:
                held.append(exc)

        holders = [threading.Thread(target=hold) for _ in range(LONG_POLLS)]
        for t in holders:
            t.start()
        refused = None
        time.sleep(0.3)  # let the holders reach the server
        deadline = time.monotonic() + 18
        while refused is None and time.monotonic() < deadline:
            r = http.get("/api/v2/projects/pub/changes", params={"since": head, "wait": 0.05}, headers=key)
            if r.status_code == 429:
                refused = r
        assert refused is not None, f"the cap was never reached; the holders got {held}"
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["code"] == "too_many_requests"
        # another caller is not held back by this one; a poll without a wait takes no slot
        other = basic(world.keys["pub:editor"])
        assert (
            http.get(
                "/api/v2/projects/pub/changes", params={"since": head, "wait": 0.05}, headers=other
            ).status_code
            == 200
        )
        assert (
            http.get("/api/v2/projects/pub/changes", params={"since": head}, headers=key).status_code == 200
        )
        for t in holders:
            t.join()
        r = http.get("/api/v2/projects/pub/changes", params={"since": head, "wait": 0.05}, headers=key)
        assert r.status_code == 200, r.text


ANONYMOUS_CALLERS = 40  # each from its own loopback address: 40 callers, one poll each


def test_long_polls_are_capped_per_server_process(world: World) -> None:
    """Many anonymous callers, each within its own cap, cannot hold more than the process's
    long polls together; the rest get 429 + Retry-After, while /healthz and polls that do not
    wait are answered as usual."""
    with world.client() as http:
        head = http.get("/api/v2/projects/pub").json()["revision"]
    url = f"{world.url}/api/v2/projects/pub/changes"
    answers: dict[str, httpx.Response] = {}

    def poll(address: str) -> None:
        transport = httpx.HTTPTransport(local_address=address)
        with httpx.Client(transport=transport, timeout=60) as client:
            answers[address] = client.get(url, params={"since": head, "wait": 20})

    addresses = [f"127.0.0.{10 + i}" for i in range(ANONYMOUS_CALLERS)]
    pollers = [threading.Thread(target=poll, args=(a,)) for a in addresses]
    for t in pollers:
        t.start()
    deadline = time.monotonic() + 15
    while len(answers) < ANONYMOUS_CALLERS - LONG_POLLS_PER_PROCESS and time.monotonic() < deadline:
        time.sleep(0.1)
    # the process is full now: what does not wait is still served, a new long poll is not
    with world.client() as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/api/v2/projects/pub/changes", params={"since": head}).status_code == 200
        key = basic(world.keys["pub:viewer"])
        full = http.get("/api/v2/projects/pub/changes", params={"since": head, "wait": 1}, headers=key)
    for t in pollers:
        t.join()
    statuses = sorted(r.status_code for r in answers.values())
    assert statuses == [200] * LONG_POLLS_PER_PROCESS + [429] * (ANONYMOUS_CALLERS - LONG_POLLS_PER_PROCESS)
    refused = next(r for r in answers.values() if r.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["detail"] == {"limit": LONG_POLLS_PER_PROCESS, "scope": "server"}
    assert full.status_code == 429 and full.json()["error"]["detail"]["scope"] == "server", full.text
    # the slots came back when the waits ended
    with world.client() as http:
        r = http.get("/api/v2/projects/pub/changes", params={"since": head, "wait": 0.05})
        assert r.status_code == 200, r.text


def test_a_repeated_id_is_served_once(world: World) -> None:
    fid = world.file_ids["pub"]
    with world.client() as http:
        one = http.post("/api/v2/projects/pub/items:batch", json={"ids": [fid], "blobs": "inline"})
        many = http.post("/api/v2/projects/pub/items:batch", json={"ids": [fid] * 10_000, "blobs": "inline"})
        assert many.status_code == 200, many.text
        assert many.content == one.content
        assert [item["id"] for item, _ in frames.decode(many.content)] == [fid]
        r = http.post("/api/v2/projects/pub/items:batch", json={"ids": [fid] * 10_001})
        assert r.status_code == 422
