"""Streaming on both stacks: SQLite + local blobs against PostgreSQL + S3 (moto on loopback).

One set of real photographs (as in ``make demo``) is imported into a store on each stack; a
server process per store serves it with ``ANNOSTREAM_TIMINGS=1``, so its ``/debug/timings``
reports where its time went (database, object store, framing; see store/timings.py), and
when the bench started moto itself, moto's own CPU per item is reported beside it. In
interleaved rounds (SQLite, PostgreSQL + S3, SQLite, ...) each stack streams one
``to_pytorch`` epoch with images (DataLoader workers, the bench's decoder), unpinned and then
pinned (the client and its workers on one core; the servers, PostgreSQL and moto on the
other: ``epoch.pinned``), then a few passes of ``items:batch`` on one client thread without
decoding, blobs inline (what the server sustains) and metadata-only (no blobs); reported:
items/s (median, range),
the per-round ratio to SQLite + local, and the server's milliseconds per item by phase.
PostgreSQL + S3 is served twice: as configured by default, and with the read-through blob
cache (``ANNOSTREAM_BLOB_CACHE``, store/cache.py), warmed by one pass first. ``--before
DIR`` also serves both stacks with the code in ``DIR`` (another checkout's ``src``) in the
same rounds, for before/after figures taken in the same minutes.

    python -m benchmarks.bench_stacks [--images 200] [--rounds 5] [--before ../old/src]

Uses ``ANNOSTREAM_TEST_PG_URL`` / ``ANNOSTREAM_TEST_S3_ENDPOINT`` when set (as CI exports
them), else starts PostgreSQL and moto on loopback itself (tests/services.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from annostream.client.transports import EmbeddedTransport, HttpTransport
from annostream.demo import build_photo_coco
from annostream.formats.coco import read_coco
from annostream.server.launch import running_server
from annostream.store.cache import CACHE_ENV
from annostream.store.timings import ENV as TIMINGS_ENV
from benchmarks import epoch
from tests import services as svc

PROJECT = "bench"
STACKS = ("sqlite+local", "postgresql+s3", "postgresql+s3, blob cache")
PHASES = ("request", "database", "object_store", "framing")
S3_CPU = "s3_server_cpu"  # the object store's own CPU (moto, when this bench started it)
# to_pytorch epochs with images, unpinned and pinned; items:batch with blobs inline, one client
# thread; without blobs.
MODES = ("images", "pinned", "inline", "metadata")
# Items per measurement of the items:batch modes, at least: a pass over 200 photos without
# blobs takes 20-50 ms, too short to time alone (one scheduler hiccup moves it by half).
MIN_ITEMS = {"inline": 2_000, "metadata": 10_000}


def s3_server(root: Path) -> psutil.Process | None:
    """The moto process this bench started under ``root`` (None: the environment's endpoint)."""
    pid = root / "moto" / "moto.pid"
    return psutil.Process(int(pid.read_text())) if pid.is_file() else None


def cpu_seconds(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    times = process.cpu_times()
    return float(times.user + times.system)


def postgres_processes(root: Path) -> list[psutil.Process]:
    """PostgreSQL's processes, when this bench started it under ``root`` (none otherwise):
    the postmaster (``pg/pgdata/postmaster.pid``) and the backends it has forked so far."""
    pid_file = root / "pg" / "pgdata" / "postmaster.pid"
    if not pid_file.is_file():
        return []
    postmaster = psutil.Process(int(pid_file.read_text().split()[0]))
    return [postmaster, *postmaster.children()]


@contextlib.contextmanager
def pg_and_s3(root: Path) -> Iterator[svc.Services]:
    """PostgreSQL and an S3 endpoint: the environment's, else started under ``root``."""
    pg, s3 = os.environ.get(svc.PG_ENV), os.environ.get(svc.S3_ENV)
    started = not (pg and s3)
    if started:
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)  # the postgres user must reach its data directory inside
        pg, s3 = svc.start_postgres(root / "pg"), svc.start_moto(root / "moto")
    svc.use_fake_aws_credentials()
    assert pg is not None and s3 is not None
    try:
        yield svc.Services(pg, s3)
    finally:
        if started:
            svc.stop_moto(root / "moto")
            svc.stop_postgres(root / "pg")


def import_photos(store_dir: Path, annotations: Path) -> dict[str, Any]:
    """The photographs imported into a new store at ``store_dir``; a viewer key to it."""
    local = EmbeddedTransport(store_dir, create=True)
    local.create_project(PROJECT, "stack benchmark", False)
    coco = json.loads(annotations.read_text())
    local.import_source(PROJECT, "Default", read_coco(coco, annotations.parent / "images"), "coco")
    return local.create_key(PROJECT, "viewer")


def server_timings(url: str) -> dict[str, dict[str, float]]:
    """The server's phase sums so far; from a server without ``/debug/timings`` (older code),
    only its CPU seconds (psutil on the pid its ``/healthz`` reports) and zero phases."""
    reply = httpx.get(f"{url}/debug/timings", timeout=10.0)
    if reply.status_code == 404:
        out = {p: {"seconds": 0.0, "count": 0} for p in PHASES}
        times = psutil.Process(httpx.get(f"{url}/healthz", timeout=10.0).json()["pid"]).cpu_times()
        out["cpu"] = {"seconds": times.user + times.system, "count": 0}
        return out
    reply.raise_for_status()
    return dict(reply.json())


def items_pass(
    url: str, key: dict[str, Any], passes: int, batch: int, blobs: bool = False, min_items: int = 0
) -> int:
    """``passes`` sequential reads of every item (``items:batch``, blobs inline or none), on one
    client thread without decoding, or as many more as read ``min_items``: the server's rate;
    items read."""
    transport = HttpTransport(url, key["client_id"], key["client_secret"])
    ids, _ = transport.ids(PROJECT, "Default", None, None)
    passes = max(passes, -(-min_items // max(1, len(ids))))
    n = 0
    for _ in range(passes):
        for start in range(0, len(ids), batch):
            n += len(transport.items(PROJECT, ids[start : start + batch].tolist(), None, blobs))
    return n


@dataclass
class Samples:
    """Per round: items/s, and the server's ms per item by phase."""

    rates: list[float] = field(default_factory=list)
    phases: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in (*PHASES, "cpu", S3_CPU)})
    statements: list[float] = field(default_factory=list)


def measured(url: str, run: Any, s3: psutil.Process | None = None) -> tuple[float, dict[str, float], int]:
    """Run ``run()`` (-> items), returning items/s, ms per item by phase (and of ``s3``'s CPU),
    items."""
    before, s3_before = server_timings(url), cpu_seconds(s3)
    t0 = time.perf_counter()
    items = run()
    seconds = time.perf_counter() - t0
    after, s3_after = server_timings(url), cpu_seconds(s3)
    per_item = {p: (after[p]["seconds"] - before[p]["seconds"]) * 1000 / items for p in (*PHASES, "cpu")}
    per_item[S3_CPU] = (s3_after - s3_before) * 1000 / items
    per_item["statements"] = (after["database"]["count"] - before["database"]["count"]) / items
    return items / seconds, per_item, items


def record(samples: Samples, rate: float, per_item: dict[str, float]) -> None:
    samples.rates.append(rate)
    for p in (*PHASES, "cpu", S3_CPU):
        samples.phases[p].append(per_item[p])
    samples.statements.append(per_item["statements"])


def run_rounds(
    urls: dict[str, str],
    keys: dict[str, dict[str, Any]],
    rounds: int,
    workers: int,
    batch: int,
    passes: int,
    services_root: Path,
    *,
    min_items: dict[str, int],
) -> dict[str, dict[str, Samples]]:
    """Interleaved rounds: each stack's image epoch unpinned, then pinned, then each stack's
    passes with blobs inline, then without (at least ``min_items`` of each mode's items).
    ``services_root``: where this bench started PostgreSQL and moto, if it did: PostgreSQL's
    processes are pinned with the servers, moto's CPU is reported."""
    s3 = s3_server(services_root)
    out = {mode: {s: Samples() for s in urls} for mode in MODES}
    for r in range(rounds):
        line = []
        for mode in ("images", "pinned"):
            others = postgres_processes(services_root) if mode == "pinned" else []
            with epoch.pinned(mode == "pinned", others):
                for stack, url in urls.items():
                    key = keys[stack]
                    rate, per_item, _ = measured(
                        url,
                        lambda url=url, key=key: epoch.ours_epoch(url, PROJECT, key, workers, batch).images,
                        s3,
                    )
                    record(out[mode][stack], rate, per_item)
                    line.append(f"{stack} {mode} {rate:,.0f}/s")
        for mode, blobs in (("inline", True), ("metadata", False)):
            for stack, url in urls.items():
                key = keys[stack]
                rate, per_item, _ = measured(
                    url,
                    lambda url=url, key=key, blobs=blobs, mode=mode: items_pass(
                        url, key, passes, batch, blobs, min_items.get(mode, 0)
                    ),
                    s3,
                )
                record(out[mode][stack], rate, per_item)
                line.append(f"{stack} {mode} {rate:,.0f}/s")
        print(f"round {r + 1}/{rounds} (load {os.getloadavg()[0]:.1f}): " + ", ".join(line), flush=True)
    return out


def summary(results: dict[str, dict[str, Samples]]) -> dict[str, Any]:
    """Medians and ranges of each stack and mode, the median and range of the per-round ratio
    (this stack over SQLite + local, taken in the same round), the phase split."""
    out: dict[str, Any] = {}
    for mode, by_stack in results.items():
        base = by_stack[STACKS[0]].rates
        for stack, s in by_stack.items():
            ratios = [x / b for b, x in zip(base, s.rates, strict=True)]
            out[f"{mode} {stack}"] = {
                "items_per_s": statistics.median(s.rates),
                "range": [min(s.rates), max(s.rates)],
                "ratio": statistics.median(ratios),
                "ratio_range": [min(ratios), max(ratios)],
                "server_ms_per_item": {p: statistics.median(v) for p, v in s.phases.items()},
                "statements_per_item": statistics.median(s.statements),
            }
    return out


def print_summary(summ: dict[str, Any]) -> None:
    head = f"{'':38s} {'items/s':>8s} {'range':>13s} {'this/sqlite':>16s}  server ms/item: "
    print(head + " ".join(f"{p:>12s}" for p in (*PHASES, "cpu", "moto cpu")) + "  stmts/item")
    for name, row in summ.items():
        lo, hi = row["range"]
        rlo, rhi = row["ratio_range"]
        ms = row["server_ms_per_item"]
        print(
            f"{name:38s} {row['items_per_s']:8,.0f} {lo:6,.0f}-{hi:<6,.0f} "
            f"{row['ratio']:5.2f}x ({rlo:.2f}-{rhi:.2f})  "
            + " ".join(f"{ms[p]:12.3f}" for p in (*PHASES, "cpu", S3_CPU))
            + f"  {row['statements_per_item']:9.3f}"
        )


def measure(
    work: Path,
    images: int,
    rounds: int,
    workers: int = 2,
    batch: int = 32,
    passes: int = 5,
    before: Path | None = None,
    min_items: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Build the stores under ``work``, serve them, run the rounds; the summary. With
    ``before`` (a source tree's ``src``), each stack is also served by that code, interleaved.
    ``min_items``: items per measurement of each items:batch mode, at least (MIN_ITEMS when
    None)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    annotations = build_photo_coco(work / "source", images)
    env = {TIMINGS_ENV: "1"}
    with pg_and_s3(work / "services") as services, contextlib.ExitStack() as stack:
        sqlite, pg = work / "sqlite", services.make_store_dir(work / "pg")
        keys = {folder: import_photos(folder, annotations) for folder in (sqlite, pg)}
        cache = {CACHE_ENV: str(work / "blob-cache")}
        variants = {STACKS[0]: (sqlite, env), STACKS[1]: (pg, env), STACKS[2]: (pg, {**env, **cache})}
        if before is not None:
            old = {"PYTHONPATH": os.pathsep.join([str(before), *sys.path])}
            for name in STACKS[:2]:
                folder, _ = variants[name]
                variants[f"{name} (before)"] = (folder, {**env, **old})
        urls = {
            name: stack.enter_context(running_server(folder, env=variant_env))
            for name, (folder, variant_env) in variants.items()
        }
        by_name = {name: keys[folder] for name, (folder, _) in variants.items()}
        for name, url in urls.items():  # warm: connections, vocabulary, pools, the blob cache
            items_pass(url, by_name[name], 1, batch, True)
            epoch.ours_epoch(url, PROJECT, by_name[name], workers, batch)
        load0 = os.getloadavg()
        least = MIN_ITEMS if min_items is None else min_items
        results = run_rounds(
            urls,
            by_name,
            rounds,
            workers,
            batch,
            passes,
            work / "services",
            min_items=least,
        )
        load1 = os.getloadavg()
    summ = summary(results)
    summ["conditions"] = {
        "images": images,
        "rounds": rounds,
        "dataloader_workers": workers,
        "batch": batch,
        "passes": passes,
        "min_items": least,
        "decoder": epoch.DECODER,
        "load_before": load0,
        "load_after": load1,
    }
    return summ


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--passes", type=int, default=5, help="items:batch passes per round and mode")
    parser.add_argument("--work", type=Path, default=None, help="where data is built (a temporary dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    parser.add_argument(
        "--before", type=Path, default=None, help="also serve with this src tree, interleaved"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="annostream-stacks-") as tmp:
        work = args.work or Path(tmp) / "stacks"
        summ = measure(work, args.images, args.rounds, args.workers, args.batch, args.passes, args.before)
    c = summ["conditions"]
    print(
        f"{c['images']} photos, {c['rounds']} interleaved rounds, {c['dataloader_workers']} DataLoader "
        f"workers, batch {c['batch']}, decoder {c['decoder']}; load {c['load_before'][0]:.1f} -> "
        f"{c['load_after'][0]:.1f}"
    )
    print_summary({k: v for k, v in summ.items() if k != "conditions"})
    if args.json:
        args.json.write_text(json.dumps(summ, indent=2))


if __name__ == "__main__":
    main()
