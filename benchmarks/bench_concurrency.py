"""Concurrent metadata-only streaming clients against one server: aggregate items/s and the
server's CPU per item (its processes' own accounting: the parent and, with ``--workers``,
every worker process).

    python -m benchmarks.bench_concurrency [--files 5000] [--clients 1 4 16] [--workers 1 2] [--rounds 3]

Each client is its own process streaming the whole dataset's metadata (``for s in ds``, no
images). Every client imports, connects and reads the dataset's size before the clock
starts; the clients then start together and the figure covers the last one's finish.
Rounds are interleaved (each round runs every server form and client count once); the
figures are medians of the rounds with their range.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from annostream.server.launch import running_server
from benchmarks.data import build_metadata


def _client(url: str, project: str, key: dict[str, Any], ready: Any, start: Any, out: Any) -> None:
    os.environ["ANNOSTREAM_PROGRESS"] = "0"
    from annostream import Project

    ds = Project(project, key["client_id"], key["client_secret"], host=url).dataset("Default")
    len(ds)  # connected, and the dataset's ids in hand, before the clock starts
    ready.put(1)
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


def _server_pid(store: Path) -> int:
    return next(p.pid for p in psutil.Process().children() if str(store) in " ".join(p.cmdline()))


def run_clients(
    url: str, server_pid: int, project: str, key: dict[str, Any], clients: int
) -> dict[str, float]:
    """Aggregate items/s and server CPU ms per item for ``clients`` concurrent full passes."""
    ctx = mp.get_context("spawn")
    ready, start, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_client, args=(url, project, key, ready, start, out)) for _ in range(clients)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=300)
    cpu0, t0 = _server_cpu(server_pid), time.perf_counter()
    start.set()
    items = sum(out.get(timeout=600) for _ in procs)
    seconds = time.perf_counter() - t0
    cpu = _server_cpu(server_pid) - cpu0
    for p in procs:
        p.join()
    return {"items_per_s": items / seconds, "server_cpu_ms_per_item": cpu * 1000 / items}


def measure(
    store: Path,
    project: str,
    key: dict[str, Any],
    clients: list[int],
    workers: list[int],
    rounds: int,
    log: Any = print,
) -> dict[tuple[int, int], list[dict[str, float]]]:
    """Every (workers, clients) pair once per round, rounds interleaved; one server start per
    server form per round."""
    results: dict[tuple[int, int], list[dict[str, float]]] = {(w, c): [] for w in workers for c in clients}
    for r in range(rounds):
        for w in workers:
            with running_server(store, workers=w, timeout=180.0) as url:
                pid = _server_pid(store)
                for c in clients:
                    got = run_clients(url, pid, project, key, c)
                    results[w, c].append(got)
                    log(
                        f"round {r + 1}/{rounds} --workers {w} {c:3d} clients: "
                        f"{got['items_per_s']:8,.0f} items/s, server {got['server_cpu_ms_per_item']:.3f} "
                        f"CPU-ms/item (load {os.getloadavg()[0]:.1f})"
                    )
    return results


def summary(runs: list[dict[str, float]], field: str) -> tuple[float, float, float]:
    """Median, min and max of one figure over the rounds."""
    values = [run[field] for run in runs]
    return statistics.median(values), min(values), max(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--per-file", type=int, default=10)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        built = build_metadata(Path(tmp) / "meta", args.files, args.per_file)
        load = os.getloadavg()[0]
        print(f"{args.files} files x {args.per_file} instances, metadata only; load {load:.2f}")
        results = measure(built.store, built.project, built.key, args.clients, args.workers, args.rounds)
        print(f"medians of {args.rounds} interleaved rounds (range); load now {os.getloadavg()[0]:.2f}")
        for (w, c), runs in results.items():
            rate, cpu = summary(runs, "items_per_s"), summary(runs, "server_cpu_ms_per_item")
            print(
                f"  --workers {w} {c:3d} clients: {rate[0]:8,.0f} items/s ({rate[1]:,.0f}-{rate[2]:,.0f}), "
                f"server {cpu[0]:.3f} CPU-ms/item ({cpu[1]:.3f}-{cpu[2]:.3f})"
            )


if __name__ == "__main__":
    main()
