"""``python -m benchmarks.run [--quick]``: every figure side by side, as a table and JSON.

It builds its data (real photographs as in ``make demo``, plus synthetic metadata), starts
the server on loopback, and takes every streaming figure twice: on plain loopback and
through a proxy adding 20 ms of round trip. Figures are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks import bench_server_cpu, epoch, meta
from benchmarks.data import Built, build_images, build_metadata
from benchmarks.proxy import delayed

RESULTS = Path(__file__).with_name("results")
RTT_MS = 20.0
QUERY = "labels.cat > 2"


@dataclass
class Config:
    images: int
    meta_files: int
    meta_small_files: int
    per_file: int
    diffgram_items: int
    repeats: int
    workers: int = 2
    batch_size: int = 32


FULL = Config(images=3000, meta_files=100_000, meta_small_files=1_000, per_file=10,
              diffgram_items=300, repeats=3)
QUICK = Config(images=240, meta_files=3_000, meta_small_files=300, per_file=10,
               diffgram_items=40, repeats=1)


@dataclass
class Row:
    figure: str
    link: str
    ours: float | None
    baseline: float | None
    unit: str
    target: str
    higher_is_better: bool = True
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.ours is None or self.baseline is None or not self.ours or not self.baseline:
            return None
        return self.ours / self.baseline if self.higher_is_better else self.baseline / self.ours


class Bench:
    def __init__(self, cfg: Config, work: Path, console: Console) -> None:
        self.cfg = cfg
        self.work = work
        self.console = console
        self.rows: list[Row] = []

    def log(self, text: str) -> None:
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {text}")

    def add(self, row: Row) -> None:
        self.rows.append(row)
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else "-"
        self.log(f"{row.figure} [{row.link}]: ours {_fmt(row.ours)} vs {_fmt(row.baseline)} {row.unit} "
                 f"-> {ratio} {row.note}")

    def attempt(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run one measurement; a failure becomes a note in the table, not a crash."""
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - a broken peer must not stop the others
            self.log(f"[yellow]{what} failed: {type(exc).__name__}: {exc}[/yellow]")
            if os.environ.get("BENCH_DEBUG"):
                traceback.print_exc()
            return f"{type(exc).__name__}: {str(exc)[:80]}"

    def median_rate(self, fn: Callable[[], epoch.Epoch]) -> float:
        return statistics.median(fn().rate for _ in range(self.cfg.repeats))


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _num(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) else None


def _note(*values: Any) -> str:
    return "; ".join(v for v in values if isinstance(v, str))


def image_figures(b: Bench, built: Built) -> None:
    from annostream.server.launch import running_server

    cfg = b.cfg
    assert built.images_dir is not None and built.annotations is not None
    b.log(f"local disk epoch ({built.files} JPEGs, {cfg.workers} workers, decoder {epoch.DECODER})")
    local = b.median_rate(lambda: epoch.local_epoch(built.images_dir, built.annotations, cfg.workers,
                                                    cfg.batch_size))
    wds_dir, mds_dir = b.work / "wds", b.work / "mds"
    shards = b.attempt("webdataset shards", lambda: epoch.write_wds_shards(
        built.images_dir, built.annotations, wds_dir, max(2, built.files // 500)))
    shutil.rmtree(mds_dir, ignore_errors=True)
    mds_ok = b.attempt("mds shards", lambda: epoch.write_mds_shards(built.images_dir, built.annotations,
                                                                    mds_dir))
    lit_dir = b.work / "litdata"
    shutil.rmtree(lit_dir, ignore_errors=True)
    lit_ok = b.attempt("litdata chunks", lambda: epoch.write_litdata_chunks(built.images_dir,
                                                                          built.annotations, lit_dir))
    with running_server(built.store) as url:
        ours_by_link: dict[str, float | None] = {}
        for link, rtt in (("loopback", 0.0), ("20 ms", RTT_MS)):
            with delayed(url, rtt) as link_url:
                b.log(f"annostream epoch over {link}")
                ours = b.attempt("to_pytorch epoch", lambda: b.median_rate(
                    lambda: epoch.ours_epoch(link_url, built.project, built.key, cfg.workers, cfg.batch_size)))
                ours_by_link[link] = _num(ours)
                b.add(Row("1. epoch: to_pytorch vs local disk", link, _num(ours), local, "img/s", ">= 0.9x",
                          note=_note(ours)))
                b.log(f"diffgram SDK epoch over {link} (first {cfg.diffgram_items} files)")
                dg = b.attempt("diffgram epoch", lambda: epoch.diffgram_epoch(
                    link_url, built.project, built.key, cfg.workers, cfg.batch_size, cfg.diffgram_items).rate)
                b.add(Row("2. epoch: ours vs official diffgram SDK", link, _num(ours), _num(dg), "img/s",
                          ">= 10x at 20 ms, >= 2x loopback", note=_note(ours, dg)))
        if isinstance(shards, list):
            with epoch.static_server(wds_dir) as wds_url:
                for link, rtt in (("loopback", 0.0), ("20 ms", RTT_MS)):
                    with delayed(wds_url, rtt) as link_url:
                        b.log(f"webdataset epoch over {link}")
                        rate = b.attempt("webdataset epoch", lambda: b.median_rate(
                            lambda: epoch.wds_epoch(link_url, shards, cfg.workers, cfg.batch_size)))
                        b.add(Row("7. epoch: ours vs WebDataset (tar over HTTP)", link, ours_by_link[link],
                                  _num(rate), "img/s", ">= 1.0x", note=_note(rate)))
        else:
            b.add(Row("7. epoch: ours vs WebDataset (tar over HTTP)", "loopback", ours_by_link["loopback"],
                      None, "img/s", ">= 1.0x", note=_note(shards)))
        b.log("mosaicml streaming epoch (local remote)")
        rate = mds_ok if isinstance(mds_ok, str) else b.attempt("mds epoch", lambda: b.median_rate(
            lambda: epoch.mds_epoch(mds_dir, cfg.workers, cfg.batch_size)))
        b.add(Row("7. epoch: ours vs MosaicML Streaming (MDS, local remote)", "loopback",
                  ours_by_link["loopback"], _num(rate), "img/s", ">= 1.0x", note=_note(rate)))
        b.log("litdata epoch (optimize output in a local directory)")
        rate = lit_ok if isinstance(lit_ok, str) else b.attempt("litdata epoch", lambda: b.median_rate(
            lambda: epoch.litdata_epoch(str(lit_dir), cfg.workers, cfg.batch_size)))
        b.add(Row("7. epoch: ours vs LitData (optimize chunks, local dir)", "loopback",
                  ours_by_link["loopback"], _num(rate), "img/s", ">= 1.0x", note=_note(rate)))
    b.log("server CPU per 1,000 images (items:batch, inline blobs, psutil on the server's pid)")
    cpu = b.attempt("server cpu", lambda: bench_server_cpu.measure(built.store, built.project, built.key,
                                                                  max(cfg.repeats, 3), cfg.batch_size))
    if isinstance(cpu, dict):
        med, lo, hi = cpu["server_s_per_1000"]
        b.add(Row("8. server CPU per 1,000 images served", "loopback", med, None, "CPU-s", "<= 0.10",
                  note=f"range {lo:.3f}-{hi:.3f}; client {cpu['client_ms_per_item'][0]:.3f} CPU-ms/item, "
                       f"no decode", higher_is_better=False))
    else:
        b.add(Row("8. server CPU per 1,000 images served", "loopback", None, None, "CPU-s", "<= 0.10",
                  note=_note(cpu), higher_is_better=False))


def metadata_figures(b: Bench, large: Built, small: Built) -> None:
    from annostream.server.launch import running_server

    cfg = b.cfg
    label = f"{large.files // 1000}k files / {large.instances / 1e6:g}M instances"
    with running_server(large.store) as url_large, running_server(small.store) as url_small:
        b.log(f"export then load ({label})")
        shutil.rmtree(b.work / "export", ignore_errors=True)
        shutil.rmtree(b.work / "export-small", ignore_errors=True)
        baseline, export = meta.export_then_load(url_large, large.project, large.key, b.work / "export")
        small_export = meta.write_export(url_small, small.project, small.key, b.work / "export-small")
        for link, rtt in (("loopback", 0.0), ("20 ms", RTT_MS)):
            with delayed(url_large, rtt) as link_url:
                first = min(meta.first_batch(link_url, large.project, large.key) for _ in range(3))
                b.add(Row(f"3. time to first batch vs export+load ({label})", link, first, baseline, "s",
                          ">= 50x sooner", higher_is_better=False))
                lat = [meta.query_latency(link_url, large.project, large.key, QUERY) for _ in range(3)]
                b.add(Row(f"5. query '{QUERY}' to first item ({label})", link,
                          min(x["first_item"] for x in lat), None, "s", "< 200 ms", note="limit 0.2 s"))
                b.add(Row(f"5. query '{QUERY}' to count ({label})", link,
                          min(x["count"] for x in lat), None, "s", "< 200 ms", note="limit 0.2 s"))
                n = min(large.files, 20_000)
                rate = meta.items_rate(link_url, large.project, large.key, n)
                b.add(Row("6. metadata-only streaming, HTTP", link, rate, None, "items/s", "reported",
                          note=f"{cfg.per_file} instances per item"))
        rate = meta.items_rate(f"file://{large.store.resolve()}", large.project, None, min(large.files, 20_000))
        b.add(Row("6. metadata-only streaming, embedded", "in-process", rate, None, "items/s", "reported",
                  note=f"{cfg.per_file} instances per item"))
        b.log("peak RSS (each case in a fresh process)")
        stream_small = meta.peak_rss("stream", url_small, small.project, json.dumps(small.key))
        stream_large = meta.peak_rss("stream", url_large, large.project, json.dumps(large.key))
        load_small = meta.peak_rss("load", str(small_export))
        load_large = meta.peak_rss("load", str(export))
    mib = 2 ** 20
    growth = f"{small.instances / 1e3:g}k -> {large.instances / 1e6:g}M instances"
    b.add(Row(f"4. peak RSS streaming {growth}", "loopback",
              stream_large / mib, stream_small / mib, "MiB", "<= 1.2x (flat)", higher_is_better=False,
              note=f"{stream_small / mib:.0f} -> {stream_large / mib:.0f} MiB",
              extra={"growth": stream_large / stream_small}))
    b.add(Row(f"4. peak RSS loading the COCO export, {growth}", "disk",
              load_large / mib, load_small / mib, "MiB", "grows with data", higher_is_better=False,
              note=f"{load_small / mib:.0f} -> {load_large / mib:.0f} MiB",
              extra={"growth": load_large / load_small}))


def render(rows: list[Row], title: str) -> Table:
    table = Table("figure", "link", "annostream", "baseline", "unit", "ratio", "target", title=title)
    for r in rows:
        ratio = r.extra.get("growth")
        shown = f"{ratio:.2f}x growth" if ratio else (f"{r.ratio:.2f}x" if r.ratio is not None else "-")
        base = r.note if r.baseline is None and r.note else _fmt(r.baseline)
        table.add_row(r.figure, r.link, _fmt(r.ours), base, r.unit, shown, r.target)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small data, one repeat (< 2 minutes)")
    parser.add_argument("--work", type=Path, default=Path("bench-data"), help="where data is built")
    parser.add_argument("--only", choices=["images", "metadata"], help="run one group of figures")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    console = Console(width=max(150, Console().width))
    b = Bench(cfg, args.work, console)
    t0 = time.perf_counter()
    if args.only in (None, "images"):
        b.log(f"building {cfg.images} photographs")
        built = build_images(args.work / "images", cfg.images)
        image_figures(b, built)
    if args.only in (None, "metadata"):
        b.log(f"building metadata stores: {cfg.meta_files} and {cfg.meta_small_files} files")
        large = build_metadata(args.work / "meta-large", cfg.meta_files, cfg.per_file)
        small = build_metadata(args.work / "meta-small", cfg.meta_small_files, cfg.per_file)
        metadata_figures(b, large, small)
    mode = "quick" if args.quick else "full"
    machine = f"{os.cpu_count()} cores, {_memory_gib():.0f} GiB, {platform.machine()}, Python {platform.python_version()}"
    console.print(render(b.rows, f"annostream benchmarks ({mode}; {machine})"))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{mode}.json"
    out.write_text(json.dumps({
        "mode": mode, "machine": machine, "config": asdict(cfg), "decoder": epoch.DECODER,
        "seconds": time.perf_counter() - t0, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "rows": [{**asdict(r), "ratio": r.ratio} for r in b.rows],
    }, indent=2))
    console.print(f"results written to {out} in {time.perf_counter() - t0:.0f} s")
    return 0


def _memory_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30


if __name__ == "__main__":
    sys.exit(main())
