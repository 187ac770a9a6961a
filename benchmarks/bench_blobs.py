"""Blob throughput: presigned S3 redirects versus bytes proxied through the API server.

One PostgreSQL + S3 store, served twice: once as configured (the blob route answers 307 to a
presigned URL, the client fetches from object storage) and once with ``redirect=0`` (the
server reads each object from S3 and streams it on). Clients are SDK transports on threads.

    PYTHONPATH=src python benchmarks/bench_blobs.py [--count 48] [--side 512] [--threads 8]

Uses ``ANNOSTREAM_TEST_PG_URL`` / ``ANNOSTREAM_TEST_S3_ENDPOINT`` when set (as CI exports
them), else starts PostgreSQL and moto on loopback itself (tests/services.py).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annostream.client.transports import EmbeddedTransport, HttpTransport
from annostream.server.launch import running_server
from tests import services as svc


def noise_png(side: int, seed: int) -> bytes:
    """An incompressible image, so sizes are what the pixels say."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def server_cpu_seconds(url: str) -> float | None:
    """CPU time used so far by the server on ``url``'s port and its worker processes."""
    try:
        import psutil
    except ImportError:
        return None
    port = url.rsplit(":", 1)[-1]
    total = 0.0
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "serve" in cmd and port in cmd:
            for p in [proc, *proc.children(recursive=True)]:
                times = p.cpu_times()
                total += times.user + times.system
    return total


def fetch_all(url: str, key: dict[str, str], shas: list[str], threads: int, rounds: int) -> dict[str, float]:
    """Fetch every blob ``rounds`` times over ``threads`` threads; MB/s, blobs/s, latencies."""
    transport = HttpTransport(url, key["client_id"], key["client_secret"], pool_size=threads * 2)
    transport.blob("bench", shas[0])  # warm the pools

    def one(sha: str) -> tuple[int, float]:
        t0 = time.perf_counter()
        n = len(transport.blob("bench", sha))
        return n, time.perf_counter() - t0

    work = shas * rounds
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(one, work))
    wall = time.perf_counter() - t0
    total = sum(n for n, _ in results)
    lat = sorted(s for _, s in results)
    return {
        "MB/s": total / wall / 1e6,
        "blobs/s": len(work) / wall,
        "p50 ms": statistics.median(lat) * 1e3,
        "p95 ms": lat[int(0.95 * (len(lat) - 1))] * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=48, help="distinct blobs")
    parser.add_argument("--side", type=int, default=512, help="image side in pixels (blob size ~ 3*side^2)")
    parser.add_argument("--threads", type=int, default=8, help="concurrent client threads")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the blobs per mode")
    parser.add_argument("--workers", type=int, default=2, help="API server processes")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="annostream-bench-"))
    root.chmod(0o755)  # the postgres user must reach its data directory inside
    pg, s3 = os.environ.get(svc.PG_ENV), os.environ.get(svc.S3_ENV)
    started = not (pg and s3)
    if started:
        pg, s3 = svc.start_postgres(root / "pg"), svc.start_moto(root / "moto")
    svc.use_fake_aws_credentials()
    try:
        services = svc.Services(pg, s3)
        direct = services.make_store_dir(root / "direct")
        pointer = json.loads((direct / "store.json").read_text())
        proxied = root / "proxied"
        proxied.mkdir()
        (proxied / "store.json").write_text(
            json.dumps({**pointer, "blobs": pointer["blobs"] + "&redirect=0"})
        )

        local = EmbeddedTransport(direct)
        key = local.create_project("bench", None, False)["admin_key"]
        shas = [
            local.upload_file("bench", "Default", f"n{i}.png", noise_png(args.side, i), [], {})["sha256"]
            for i in range(args.count)
        ]
        size = sum(len(noise_png(args.side, i)) for i in range(2)) / 2
        print(
            f"{args.count} blobs of ~{size / 1e6:.2f} MB, {args.threads} client threads, "
            f"{args.workers} server processes, {args.rounds} rounds; S3 = moto at {s3}"
        )
        for label, folder in (("presigned redirect", direct), ("through the API", proxied)):
            with running_server(folder, workers=args.workers) as url:
                cpu0 = server_cpu_seconds(url)
                r = fetch_all(url, key, shas, args.threads, args.rounds)
                cpu1 = server_cpu_seconds(url)
            gb = size * args.count * args.rounds / 1e9
            cpu = f"  API CPU {(cpu1 - cpu0) / gb:6.1f} s/GB" if cpu0 is not None and cpu1 is not None else ""
            print(
                f"{label:>20}: {r['MB/s']:7.1f} MB/s  {r['blobs/s']:7.1f} blobs/s  "
                f"p50 {r['p50 ms']:6.1f} ms  p95 {r['p95 ms']:6.1f} ms{cpu}"
            )
    finally:
        if started:
            svc.stop_moto(root / "moto")
            svc.stop_postgres(root / "pg")


if __name__ == "__main__":
    main()
