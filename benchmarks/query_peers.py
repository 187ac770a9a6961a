"""Queries beside FiftyOne on the same label set, to first item and to count.

    python -m benchmarks.query_peers [--files 100000] [--per-file 10] [--rounds 5]

Both sides load :mod:`benchmarks.synthetic` (one seeded generator): annostream through its
own ``import json`` (the set written as an annostream JSON export, then imported in one
commit), FiftyOne through ``add_samples`` in its own virtual environment
(:mod:`benchmarks.fiftyone_side`, a subprocess; ``make install-bench`` makes
``.venv-fiftyone``). Each round times every query on annostream over HTTP (a server on
loopback), embedded (in-process), and FiftyOne, one after the other (A, B, C, A, B, C, ...);
figures are medians of the rounds with their range, and each query's count must agree.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks import synthetic

ROOT = Path(__file__).resolve().parents[1]
FIFTYONE_PYTHON = ROOT / ".venv-fiftyone" / "bin" / "python"
QUERIES = [
    "labels.cat > 2",
    "labels.cat > 2 and file.metadata.split = val",
    "attributes.weather = rain",
]


@dataclass
class Timing:
    first_item: list[float]
    count: list[float]
    n: int | None = None


def _images(out: Path) -> dict[int, dict[str, str]]:
    """One plain JPEG per synthetic width (an import needs an image; files share its bytes)."""
    import hashlib
    import io

    from PIL import Image

    (out / "images").mkdir(parents=True, exist_ok=True)
    refs = {}
    for width in synthetic.WIDTHS:
        buf = io.BytesIO()
        Image.new("RGB", (width, synthetic.HEIGHT), (width % 256, 90, 160)).save(buf, "JPEG")
        sha = hashlib.sha256(buf.getvalue()).hexdigest()
        (out / "images" / f"{sha}.jpg").write_bytes(buf.getvalue())
        refs[width] = {"sha256": sha, "image": f"images/{sha}.jpg"}
    return refs


def write_json_export(out: Path, n_files: int, per_file: int) -> Path:
    """The synthetic set as an annostream JSON export (``export.json`` + ``files.jsonl``)."""
    images = _images(out)
    with open(out / "files.jsonl", "wb") as lines:
        for f in synthetic.files(n_files, per_file):
            instances = [
                {
                    "type": "box",
                    "label": b.label,
                    "geometry": {"x_min": b.x, "y_min": b.y, "x_max": b.x + b.w, "y_max": b.y + b.h},
                    "attributes": {"weather": b.weather} if b.weather else {},
                }
                for b in f.boxes
            ]
            line = {
                "name": f.name,
                "type": "image",
                "width": f.width,
                "height": f.height,
                "metadata": {"split": f.split},
                **images[f.width],
                "instances": instances,
            }
            lines.write(orjson.dumps(line) + b"\n")
    header = {
        "format": "annostream-json",
        "version": 1,
        "labels": [{"id": i, "name": name} for i, name in enumerate(synthetic.LABELS, 1)],
        "attribute_groups": [{"name": "weather", "kind": "select", "options": list(synthetic.WEATHER)}],
        "files": "files.jsonl",
        "counts": {"files": n_files},
    }
    (out / "export.json").write_bytes(orjson.dumps(header))
    return out


def build_ours(root: Path, n_files: int, per_file: int) -> tuple[Path, dict[str, Any], float]:
    """A store holding the set, a viewer key, and the import's rate in files/s."""
    from annostream import Project
    from annostream.client.transports import EmbeddedTransport
    from benchmarks.data import PROJECT

    shutil.rmtree(root, ignore_errors=True)
    export = write_json_export(root / "export", n_files, per_file)
    local = EmbeddedTransport(root / "store", create=True)
    local.create_project(PROJECT, "annostream benchmark (queries)", False)
    key = local.create_key(PROJECT, "viewer")
    project = Project(PROJECT, host=f"file://{(root / 'store').resolve()}")
    t0 = time.perf_counter()
    project.import_format("json", export, "Default", progress=False)
    rate = n_files / (time.perf_counter() - t0)
    shutil.rmtree(export)
    return root / "store", key, rate


def ours_query(url: str, key: dict[str, Any] | None, query: str) -> tuple[float, float, int]:
    """Seconds to the first item and to the count of a slice, on a fresh project handle."""
    from annostream import Project
    from benchmarks.data import PROJECT

    if key is None:
        proj = Project(PROJECT, host=url)
    else:
        proj = Project(PROJECT, key["client_id"], key["client_secret"], host=url)
    ds = proj.dataset("Default")
    t0 = time.perf_counter()
    next(iter(ds.slice(query)))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = ds.slice(query).count()
    return first, time.perf_counter() - t0, n


class FiftyOne:
    """The FiftyOne side, a subprocess in its own environment, answering one query a line."""

    def __init__(self, n_files: int, per_file: int, work: Path) -> None:
        db = work / "fiftyone-db"
        shutil.rmtree(db, ignore_errors=True)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "FIFTYONE_DATABASE_DIR": str(db),
            "FIFTYONE_DO_NOT_TRACK": "true",
            "FIFTYONE_DATABASE_VALIDATION": "false",
            "FIFTYONE_SHOW_PROGRESS_BARS": "false",
        }
        self.proc = subprocess.Popen(
            [str(FIFTYONE_PYTHON), "-m", "benchmarks.fiftyone_side", str(n_files), str(per_file)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=ROOT,
            text=True,
        )
        self.built: dict[str, Any] = self._reply()["built"]

    def _reply(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                reply: dict[str, Any] = json.loads(line)
                return reply
        raise RuntimeError(f"the FiftyOne side exited with code {self.proc.wait()}")

    def query(self, name: str) -> tuple[float, float, int]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(name + "\n")
        self.proc.stdin.flush()
        r = self._reply()
        return r["first_item"], r["count"], r["n"]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def fiftyone_missing() -> str | None:
    """Why the FiftyOne side cannot run here, or None."""
    if not FIFTYONE_PYTHON.exists():
        return f"{FIFTYONE_PYTHON.relative_to(ROOT)} not found (make install-bench makes it)"
    return None


def compare(work: Path, n_files: int, per_file: int, rounds: int, log: Any = print) -> dict[str, Any]:
    """Build both sides, then interleaved rounds of every query; returns every timing."""
    from annostream.server.launch import running_server

    log(f"building {n_files:,} files (~{n_files * per_file:,} boxes) through import json")
    store, key, ours_rate = build_ours(work / "query-peers", n_files, per_file)
    log(f"annostream: {ours_rate:,.0f} files/s; building the same set in FiftyOne")
    fo = FiftyOne(n_files, per_file, work)
    log(f"FiftyOne {fo.built['version']}: {fo.built['samples_per_s']:,.0f} samples/s")
    sides = ("ours http", "ours embedded", "fiftyone")
    timings = {(s, q): Timing([], []) for s in sides for q in QUERIES}
    try:
        with running_server(store) as url:
            run = {
                "ours http": lambda q: ours_query(url, key, q),
                "ours embedded": lambda q: ours_query(f"file://{store.resolve()}", None, q),
                "fiftyone": fo.query,
            }
            for side in sides:  # one warm-up pass each (imports, caches, connections)
                for q in QUERIES:
                    run[side](q)
            for r in range(rounds):
                for q in QUERIES:
                    for side in sides:
                        first, count, n = run[side](q)
                        t = timings[side, q]
                        t.first_item.append(first)
                        t.count.append(count)
                        t.n = n
                log(f"round {r + 1}/{rounds} done (load {os.getloadavg()[0]:.1f})")
    finally:
        fo.close()
    return {
        "files": n_files,
        "boxes_per_file": per_file,
        "rounds": rounds,
        "ours_files_per_s": ours_rate,
        "fiftyone": fo.built,
        "timings": {f"{s}|{q}": t.__dict__ for (s, q), t in timings.items()},
    }


def spread(values: list[float]) -> str:
    return f"{min(values) * 1000:.1f}-{max(values) * 1000:.1f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--per-file", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path("bench-data"))
    parser.add_argument("--json", type=Path, help="also write the timings here")
    args = parser.parse_args(argv)
    missing = fiftyone_missing()
    if missing:
        print(f"FiftyOne cannot run: {missing}")
        return 1
    load = os.getloadavg()
    result = compare(args.work, args.files, args.per_file, args.rounds)
    result["load"] = [load, os.getloadavg()]
    print(f"{'query':48} {'side':14} {'first item':>11} {'range':>18} {'count':>9} {'range':>18} {'n':>8}")
    for q in QUERIES:
        for side in ("ours http", "ours embedded", "fiftyone"):
            t = result["timings"][f"{side}|{q}"]
            print(
                f"{q:48} {side:14} {statistics.median(t['first_item']) * 1000:9.1f}ms "
                f"{spread(t['first_item']):>18} {statistics.median(t['count']) * 1000:7.1f}ms "
                f"{spread(t['count']):>18} {t['n']:8,}"
            )
    print(f"load average before {load[0]:.1f}, after {result['load'][1][0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
