"""Concurrent metadata-only streaming clients against one server: aggregate items/s and the
server's CPU per item (its processes' own accounting: the parent and, with ``--workers``,
every worker process).

    python -m benchmarks.bench_concurrency [--files 5000] [--clients 1 4 16] [--workers 1 2]

Each client is its own process streaming the whole dataset's metadata (``for s in ds``, no
images); the clients start together and the figure covers the last one's finish.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from annostream.server.launch import running_server
from benchmarks.data import build_metadata


def _client(url: str, project: str, key: dict[str, Any], start: Any, out: Any) -> None:
    from annostream import Project

    ds = Project(project, key["client_id"], key["client_secret"], host=url).dataset("Default")
    start.wait()
    out.put(sum(1 for _ in ds))


def _server_cpu(pid: int) -> float:
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def run(store: Path, project: str, key: dict[str, Any], clients: int, workers: int) -> dict[str, float]:
    """Aggregate items/s and server CPU ms per item for ``clients`` concurrent full passes."""
    ctx = mp.get_context("spawn")
    with running_server(store, workers=workers) as url:
        server = next(p for p in psutil.Process().children() if str(store) in " ".join(p.cmdline()))
        start, out = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_client, args=(url, project, key, start, out)) for _ in range(clients)]
        for p in procs:
            p.start()
        time.sleep(2.0)  # let every client import and connect before the clock starts
        cpu0, t0 = _server_cpu(server.pid), time.perf_counter()
        start.set()
        items = sum(out.get() for _ in procs)
        seconds = time.perf_counter() - t0
        cpu = _server_cpu(server.pid) - cpu0
        for p in procs:
            p.join()
    return {"items_per_s": items / seconds, "server_cpu_ms_per_item": cpu * 1000 / items}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--per-file", type=int, default=10)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        built = build_metadata(Path(tmp) / "meta", args.files, args.per_file)
        load = os.getloadavg()[0]
        print(f"{args.files} files x {args.per_file} instances, metadata only; load {load:.2f}")
        for workers in args.workers:
            for clients in args.clients:
                r = run(built.store, built.project, built.key, clients, workers)
                cpu, load = r["server_cpu_ms_per_item"], os.getloadavg()[0]
                print(
                    f"  --workers {workers} {clients:3d} clients: {r['items_per_s']:8,.0f} items/s "
                    f"server {cpu:.3f} CPU-ms/item  (load {load:.2f})"
                )


if __name__ == "__main__":
    main()
