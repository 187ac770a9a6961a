"""Server CPU per 1,000 images served, from the server process's own accounting.

A server process serves a store of real JPEGs; one client streams rounds of ``items:batch``
with inline blobs (the SDK's sequential read; a round is as many whole passes over the store
as make ``MIN_ITEMS`` images) and the server's user + system CPU seconds (psutil on the pid its
``/healthz`` reports, in 10 ms clock ticks) are read before and after. Also the client's
own CPU per item over the same epochs, with no decoding (what the SDK costs besides JPEG:
HTTP, framing, the blob's sha256 check), and, as its baseline, the CPU per file of reading
the same JPEGs from local disk (open + read), interleaved with the epochs.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from annostream.client.dataset import BATCH
from annostream.client.transports import HttpTransport
from annostream.server.launch import running_server
from benchmarks.data import build_images

MIN_ITEMS = 5_000


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def local_read_ms(images: list[Path]) -> float:
    """CPU ms per file of reading ``images`` whole from local disk (open + read)."""
    c0 = _client_cpu()
    for path in images:
        with open(path, "rb", buffering=0) as fh:
            fh.readall()
    return (_client_cpu() - c0) * 1000 / max(1, len(images))


def measure(
    store: Path,
    project: str,
    key: dict[str, Any],
    epochs: int,
    batch: int,
    images_dir: Path | None = None,
    min_items: int = MIN_ITEMS,
) -> dict[str, Any]:
    """Per round (``epochs`` of them, each at least ``min_items`` images: whole passes over the
    store): server CPU s per 1,000 images, client CPU ms per item, items/s (and, with
    ``images_dir``, local disk's open + read CPU ms per file, one pass after each round)."""
    images = sorted(p for p in images_dir.iterdir() if p.is_file()) if images_dir is not None else []
    rows = []
    with running_server(store) as url:
        server = psutil.Process(httpx.get(f"{url}/healthz").json()["pid"])
        transport = HttpTransport(url, key["client_id"], key["client_secret"])
        ids, _ = transport.ids(project, "Default", None, None)
        transport.items(project, ids[:batch].tolist(), None, True)  # warm: vocabulary, pools
        # A round reads the store whole as often as it takes to serve ``min_items``: the CPU
        # times are counted in clock ticks (10 ms), a few per cent of a small store's pass.
        passes = max(1, -(-min_items // max(1, len(ids))))
        for _ in range(epochs):
            s0, c0, t0 = _cpu(server), _client_cpu(), time.perf_counter()
            n = 0
            for _ in range(passes):
                for start in range(0, len(ids), batch):
                    n += len(transport.items(project, ids[start : start + batch].tolist(), None, True))
            s1, c1, t1 = _cpu(server), _client_cpu(), time.perf_counter()
            row = {
                "server_s_per_1000": (s1 - s0) * 1000 / n,
                "client_ms_per_item": (c1 - c0) * 1000 / n,
                "items_per_s": n / (t1 - t0),
            }
            if images:
                row["local_read_ms_per_item"] = local_read_ms(images)
            rows.append(row)
    return {
        k: (statistics.median(r[k] for r in rows), min(r[k] for r in rows), max(r[k] for r in rows))
        for k in rows[0]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=BATCH, help="items per request (the SDK's)")
    parser.add_argument("--min-items", type=int, default=MIN_ITEMS, help="images served per round at least")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        built = build_images(Path(tmp) / "cpu", args.images)
        result = measure(
            built.store, built.project, built.key, args.epochs, args.batch, built.images_dir, args.min_items
        )
    print(
        f"{built.files} images, {args.epochs} rounds of >= {args.min_items} images, batch {args.batch}, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    for name, (med, lo, hi) in result.items():
        print(f"  {name:22s} median {med:8.4f}  range {lo:8.4f} .. {hi:8.4f}")


if __name__ == "__main__":
    main()
