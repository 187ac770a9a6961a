"""Peak memory of a static export as the data grows: it must stay flat (a script, not a test).

    PYTHONPATH=src python benchmarks/bench_export_memory.py [--sizes 20000 200000] [--formats coco json]

For each size, a store is built with that many box/polygon instances (10 per image, one
small shared image), then each format is exported in a FRESH process that reports the
Python heap peak (tracemalloc) and the process's peak RSS (getrusage), so building the
data never counts against the export.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

PER_FILE = 10


def build(store_dir: Path, n_instances: int) -> None:
    from PIL import Image

    from annostream.client.transports import EmbeddedTransport
    from annostream.schema import LabelCreate
    from annostream.service.ingest import ImportRecord, import_records

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 60, 90)).save(buf, format="PNG")
    png = buf.getvalue()
    local = EmbeddedTransport(store_dir)
    local.create_project("bench", None, False)
    ref = local._ref("bench", "editor")

    def records():
        for f in range(n_instances // PER_FILE):
            insts = []
            for k in range(PER_FILE):
                x = float(k * 5)
                if k % 2:
                    insts.append(
                        {
                            "type": "polygon",
                            "label": "thing",
                            "geometry": {"points": [[x, 1.0], [x + 4, 1.0], [x + 4, 9.0], [x, 9.0]]},
                        }
                    )
                else:
                    insts.append(
                        {
                            "type": "box",
                            "label": "other",
                            "geometry": {"x_min": x, "y_min": 2.0, "x_max": x + 3, "y_max": 30.0},
                        }
                    )
            yield ImportRecord(
                where=f"file {f}",
                name=f"img_{f:07d}.png",
                read=lambda: png,
                metadata={"split": "train" if f % 5 else "val"},
                instances=insts,
            )

    import_records(
        local.store, ref, "Default", records(), labels=[LabelCreate(name="thing"), LabelCreate(name="other")]
    )


def measure(store_dir: Path, fmt: str, out: Path) -> dict:
    from annostream.client.transports import EmbeddedTransport

    local = EmbeddedTransport(store_dir)
    local.list_projects()
    tracemalloc.start()
    start = time.perf_counter()
    manifest = local.export("bench", "Default", fmt, out, None, None, False)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {
        "format": fmt,
        "instances": manifest["instances"],
        "files": manifest["files"],
        "seconds": round(seconds, 2),
        "heap_peak_mib": round(peak / 2**20, 2),
        "rss_peak_mib": round(rss_kib / 1024, 1),
        "export_mib": round(size / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--formats", nargs="+", default=["coco", "json", "yolo"])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        store, fmt, out = args.child
        print(json.dumps(measure(Path(store), fmt, Path(out))))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            store = Path(tmp) / f"store-{n}"
            t0 = time.perf_counter()
            build(store, n)
            print(f"built {n} instances in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
            for fmt in args.formats:
                done = subprocess.run(
                    [sys.executable, __file__, "--child", str(store), fmt, str(Path(tmp) / f"out-{n}-{fmt}")],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(rows[-1], file=sys.stderr)
    print(
        f"{'format':8} {'instances':>10} {'files':>7} {'seconds':>8} {'heap peak MiB':>14} "
        f"{'RSS peak MiB':>13} {'export MiB':>11}"
    )
    for r in rows:
        print(
            f"{r['format']:8} {r['instances']:>10} {r['files']:>7} {r['seconds']:>8} "
            f"{r['heap_peak_mib']:>14} {r['rss_peak_mib']:>13} {r['export_mib']:>11}"
        )


if __name__ == "__main__":
    main()
