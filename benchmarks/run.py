"""``python -m benchmarks.run [--quick]``: every figure side by side, as a table and JSON.

It builds its data (real photographs as in ``make demo``, plus synthetic metadata), starts
the server on loopback, and takes every streaming figure twice: on plain loopback and
through a proxy adding 20 ms of round trip. Figures are reported, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
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

from annostream.client.dataset import BATCH
from benchmarks import bench_scale, bench_server_cpu, bench_stacks, epoch, meta
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
    concurrency_files: int
    clients: tuple[int, ...]
    query_peer_files: int | None  # None: FiftyOne skipped (its own venv and a mongod)
    workers: int = 2
    batch_size: int = 32
    query_rounds: int = 5
    epoch_rounds: int = 5  # the epochs' per-round ratios move by 0.1-0.2: five rounds to a median


FULL = Config(
    images=3000,
    meta_files=100_000,
    meta_small_files=1_000,
    per_file=10,
    diffgram_items=300,
    repeats=3,
    concurrency_files=5_000,
    clients=(1, 4, 16),
    query_peer_files=100_000,
)
QUICK = Config(
    images=240,
    meta_files=3_000,
    meta_small_files=300,
    per_file=10,
    diffgram_items=40,
    repeats=1,
    epoch_rounds=1,
    concurrency_files=300,
    clients=(2,),
    query_peer_files=None,
)
SERVER_FORMS = (1, 2)  # annostream serve --workers N


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
    # Where ours and the baseline ran in interleaved rounds: the median of the per-round ratios
    # (oriented as ``ratio``). Each round pairs two runs taken minutes apart, so the machine's
    # drift between rounds cancels; the ratio of the two medians can pair different rounds.
    paired: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.paired is not None:
            return self.paired
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
        self.log(
            f"{row.figure} [{row.link}]: ours {_fmt(row.ours)} vs {_fmt(row.baseline)} {row.unit} "
            f"-> {ratio} {row.note}"
        )

    def attempt(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run one measurement; a failure becomes a note in the table, not a crash."""
        try:
            return fn()
        except Exception as exc:
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


def interleaved(
    b: Bench, sources: dict[str, Callable[[], epoch.Epoch]], rounds: int, pin: bool
) -> tuple[dict[str, list[float]], dict[str, str], bool]:
    """Rates of every source in interleaved rounds (A, B, C, A, B, C, ...), pinned or not;
    a source that fails once is dropped with its error."""
    rates: dict[str, list[float]] = {name: [] for name in sources}
    failed: dict[str, str] = {}
    with epoch.pinned(pin) as did:
        for r in range(rounds):
            for name, run in sources.items():
                if name in failed:
                    continue
                got = b.attempt(f"{name} epoch", lambda run=run: run().rate)  # type: ignore[misc]
                if isinstance(got, str):
                    failed[name] = got
                else:
                    rates[name].append(got)
            b.log(
                f"round {r + 1}/{rounds} ({'pinned' if did else 'unpinned'}): "
                + ", ".join(f"{n} {v[-1]:,.0f}" for n, v in rates.items() if v and n not in failed)
            )
    return rates, failed, did


def _epoch_row(
    figure: str,
    link: str,
    ours: list[float],
    base: list[float] | None,
    error: str | None,
    rounds: int,
    target: str = ">= 1.0x",
) -> Row:
    """Medians of the rounds, the median of the per-round ratios, and their spread."""
    med_ours = statistics.median(ours) if ours else None
    if error is not None or not base:
        return Row(figure, link, med_ours, None, "img/s", target, note=error or "")
    per_round = [o / x for o, x in zip(ours, base, strict=True)]
    note = f"median of {rounds} rounds; per-round ratio {min(per_round):.2f}-{max(per_round):.2f}"
    return Row(
        figure,
        link,
        med_ours,
        statistics.median(base),
        "img/s",
        target,
        note=note,
        paired=statistics.median(per_round),
    )


def s3_peers(
    b: Bench, stack: contextlib.ExitStack, built: Built, lit_dir: Path, lit_ok: Any
) -> dict[str, Callable[[int, int], epoch.Epoch] | str]:
    """A moto S3 endpoint on loopback holding LitData's chunks and a Deep Lake dataset of the
    same JPEGs; each peer's epoch runner, or why it cannot run."""
    from benchmarks import s3

    assert built.images_dir is not None and built.annotations is not None
    images_dir, annotations = built.images_dir, built.annotations
    endpoint = b.attempt("moto S3 endpoint", lambda: stack.enter_context(s3.moto_endpoint()))
    if isinstance(endpoint, str):
        return {"litdata s3": endpoint, "deeplake s3": endpoint}
    keys = (endpoint.url, s3.KEY_ID, s3.SECRET, s3.REGION)
    out: dict[str, Callable[[int, int], epoch.Epoch] | str] = {}
    lit_url = _note(lit_ok) or b.attempt(
        "litdata chunks to S3", lambda: endpoint.upload_dir(lit_dir, "litdata")
    )
    if isinstance(lit_url, str) and lit_url.startswith("s3://"):
        out["litdata s3"] = functools.partial(_litdata_s3, lit_url, epoch.litdata_s3_options(*keys))
    else:
        out["litdata s3"] = lit_url
    creds = epoch.deeplake_s3_creds(*keys)
    dl_url = f"s3://{s3.BUCKET}/deeplake"
    made = b.attempt("deeplake on S3", lambda: epoch.write_deeplake(images_dir, annotations, dl_url, creds))
    out["deeplake s3"] = made if isinstance(made, str) else functools.partial(_deeplake_s3, dl_url, creds)
    return out


def _litdata_s3(url: str, options: dict[str, Any], workers: int, batch_size: int) -> epoch.Epoch:
    return epoch.litdata_epoch(url, workers, batch_size, options)


def _deeplake_s3(url: str, creds: dict[str, str], workers: int, batch_size: int) -> epoch.Epoch:
    return epoch.deeplake_epoch(url, workers, batch_size, creds)


def server_cpu_figures(b: Bench, built: Built) -> None:
    """Server CPU per 1,000 images and the client's per item (``bench_server_cpu``), taken
    first, before the epochs: minutes of epochs leave the machine slower for a while (local
    disk's own open + read measured up to 1.5x slower right after them), and this figure is
    the code's cost, not the machine's state. The load average when it starts is noted."""
    rounds, load = max(b.cfg.repeats, 5), os.getloadavg()[0]
    b.log(f"server CPU per 1,000 images (items:batch, inline blobs, psutil on its pid; load {load:.1f})")
    cpu = b.attempt(
        "server cpu",
        lambda: bench_server_cpu.measure(
            built.store, built.project, built.key, rounds, BATCH, built.images_dir
        ),
    )
    server, note = None, _note(cpu)
    if isinstance(cpu, dict):
        server, lo, hi = cpu["server_s_per_1000"]
        note = f"median of {rounds} rounds, range {lo:.3f}-{hi:.3f}; load {load:.1f} at the start"
    b.add(
        Row(
            "8. server CPU per 1,000 images served",
            "loopback",
            server,
            None,
            "CPU-s",
            "<= 0.10",
            note=note,
            higher_is_better=False,
        )
    )
    if isinstance(cpu, dict):
        med, lo, hi = cpu["client_ms_per_item"]
        local = cpu.get("local_read_ms_per_item")
        b.add(
            Row(
                "8. client CPU per item, no decode (vs local disk open + read)",
                "loopback",
                med,
                local[0] if local else None,
                "CPU-ms",
                "reported",
                note=f"range {lo:.3f}-{hi:.3f}"
                + (f"; local range {local[1]:.3f}-{local[2]:.3f}" if local else "")
                + "; HTTP, framing and the sha256 check of every blob",
                higher_is_better=False,
            )
        )


def image_figures(b: Bench, built: Built) -> None:
    from annostream.server.launch import running_server

    cfg = b.cfg
    assert built.images_dir is not None and built.annotations is not None
    images_dir, annotations = built.images_dir, built.annotations
    wds_dir, mds_dir, lit_dir = b.work / "wds", b.work / "mds", b.work / "litdata"
    shards = b.attempt(
        "webdataset shards",
        lambda: epoch.write_wds_shards(images_dir, annotations, wds_dir, max(2, built.files // 500)),
    )
    shutil.rmtree(mds_dir, ignore_errors=True)
    mds_ok = b.attempt("mds shards", lambda: epoch.write_mds_shards(images_dir, annotations, mds_dir))
    shutil.rmtree(lit_dir, ignore_errors=True)
    lit_ok = b.attempt("litdata chunks", lambda: epoch.write_litdata_chunks(images_dir, annotations, lit_dir))
    dl_dir = b.work / "deeplake"
    shutil.rmtree(dl_dir, ignore_errors=True)
    dl_url = f"file://{dl_dir.resolve()}"
    dl_ok = b.attempt("deeplake dataset", lambda: epoch.write_deeplake(images_dir, annotations, dl_url))
    w, bs = cfg.workers, cfg.batch_size
    with contextlib.ExitStack() as stack:
        remote = s3_peers(b, stack, built, lit_dir, lit_ok)
        url = stack.enter_context(running_server(built.store))
        links = {"loopback": url, "20 ms": stack.enter_context(delayed(url, RTT_MS))}
        sources: dict[str, Callable[[], epoch.Epoch]] = {
            "local": lambda: epoch.local_epoch(images_dir, annotations, w, bs)
        }
        for link, link_url in links.items():
            sources[f"ours {link}"] = functools.partial(
                epoch.ours_epoch, link_url, built.project, built.key, w, bs
            )
        if isinstance(shards, list):
            wds_url = stack.enter_context(epoch.static_server(wds_dir))
            for link, rtt in (("loopback", 0.0), ("20 ms", RTT_MS)):
                sources[f"wds {link}"] = functools.partial(
                    epoch.wds_epoch, stack.enter_context(delayed(wds_url, rtt)), shards, w, bs
                )
        if not isinstance(mds_ok, str):
            sources["mds"] = functools.partial(epoch.mds_epoch, mds_dir, w, bs)
        if not isinstance(lit_ok, str):
            sources["litdata"] = functools.partial(epoch.litdata_epoch, str(lit_dir), w, bs)
        if not isinstance(dl_ok, str):
            sources["deeplake"] = functools.partial(epoch.deeplake_epoch, dl_url, w, bs)
        for name, run in remote.items():
            if not isinstance(run, str):
                sources[name] = functools.partial(run, w, bs)
        b.log(
            f"epochs ({built.files} JPEGs, {w} workers, decoder {epoch.DECODER}): "
            f"{cfg.epoch_rounds} interleaved rounds of {', '.join(sources)}, unpinned then pinned"
        )
        unpinned_ours: dict[str, float | None] = {}
        for pin in (False, True):
            rates, failed, did = interleaved(b, sources, cfg.epoch_rounds, pin)
            mode = "pinned" if did else ("unpinned" if not pin else "pinned: fewer than 2 cores")
            err = failed.get
            for link in links:
                ours = rates[f"ours {link}"]
                if not pin:
                    unpinned_ours[link] = statistics.median(ours) if ours else None
                b.add(
                    _epoch_row(
                        "1. epoch: to_pytorch vs local disk",
                        f"{link}, {mode}",
                        ours,
                        rates["local"],
                        err(f"ours {link}") or err("local"),
                        cfg.epoch_rounds,
                        target=">= 0.95x pinned",
                    )
                )
                wds = rates.get(f"wds {link}")
                b.add(
                    _epoch_row(
                        "7. epoch: ours vs WebDataset (tar over HTTP)",
                        f"{link}, {mode}",
                        ours,
                        wds,
                        err(f"wds {link}") or (None if wds is not None else _note(shards)),
                        cfg.epoch_rounds,
                    )
                )
            ours = rates["ours loopback"]
            mds_error = err("mds") or (None if "mds" in rates else _note(mds_ok))
            b.add(
                _epoch_row(
                    "7. epoch: ours vs MosaicML Streaming (MDS, local remote)",
                    f"loopback, {mode}",
                    ours,
                    rates.get("mds"),
                    mds_error,
                    cfg.epoch_rounds,
                )
            )
            peers = (
                ("LitData (optimize chunks, local dir)", "litdata", lit_ok),
                ("LitData (optimize chunks, S3 via moto)", "litdata s3", remote.get("litdata s3")),
                ("Deep Lake 4 (ds.pytorch, local dir)", "deeplake", dl_ok),
                ("Deep Lake 4 (ds.pytorch, S3 via moto)", "deeplake s3", remote.get("deeplake s3")),
            )
            for title, name, made in peers:
                b.add(
                    _epoch_row(
                        f"7. epoch: ours vs {title}",
                        f"loopback, {mode}",
                        ours,
                        rates.get(name),
                        err(name) or (None if name in rates else _note(made)),
                        cfg.epoch_rounds,
                    )
                )
        for link, link_url in links.items():
            b.log(f"diffgram SDK epoch over {link} (first {cfg.diffgram_items} files, unpinned)")
            dg = b.attempt(
                "diffgram epoch",
                lambda link_url=link_url: (
                    epoch.diffgram_epoch(link_url, built.project, built.key, w, bs, cfg.diffgram_items).rate
                ),
            )
            b.add(
                Row(
                    "2. epoch: ours vs official diffgram SDK",
                    link,
                    unpinned_ours[link],
                    _num(dg),
                    "img/s",
                    ">= 10x at 20 ms, >= 2x loopback",
                    note=_note(dg),
                )
            )


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
                b.add(
                    Row(
                        f"3. time to first batch vs export+load ({label})",
                        link,
                        first,
                        baseline,
                        "s",
                        ">= 50x sooner",
                        higher_is_better=False,
                    )
                )
                lat = [meta.query_latency(link_url, large.project, large.key, QUERY) for _ in range(3)]
                b.add(
                    Row(
                        f"5. query '{QUERY}' to first item ({label})",
                        link,
                        min(x["first_item"] for x in lat),
                        None,
                        "s",
                        "< 200 ms",
                        note="limit 0.2 s",
                    )
                )
                b.add(
                    Row(
                        f"5. query '{QUERY}' to count ({label})",
                        link,
                        min(x["count"] for x in lat),
                        None,
                        "s",
                        "< 200 ms",
                        note="limit 0.2 s",
                    )
                )
                n = min(large.files, 20_000)
                rate = meta.items_rate(link_url, large.project, large.key, n)
                b.add(
                    Row(
                        "6. metadata-only streaming, HTTP",
                        link,
                        rate,
                        None,
                        "items/s",
                        "reported",
                        note=f"{cfg.per_file} instances per item",
                    )
                )
        rate = meta.items_rate(
            f"file://{large.store.resolve()}", large.project, None, min(large.files, 20_000)
        )
        b.add(
            Row(
                "6. metadata-only streaming, embedded",
                "in-process",
                rate,
                None,
                "items/s",
                "reported",
                note=f"{cfg.per_file} instances per item",
            )
        )
        b.log("peak RSS (each case in a fresh process)")
        stream_small = meta.peak_rss("stream", url_small, small.project, json.dumps(small.key))
        stream_large = meta.peak_rss("stream", url_large, large.project, json.dumps(large.key))
        load_small = meta.peak_rss("load", str(small_export))
        load_large = meta.peak_rss("load", str(export))
    mib = 2**20
    growth = f"{small.instances / 1e3:g}k -> {large.instances / 1e6:g}M instances"
    b.add(
        Row(
            f"4. peak RSS streaming {growth}",
            "loopback",
            stream_large / mib,
            stream_small / mib,
            "MiB",
            "<= 1.2x (flat)",
            higher_is_better=False,
            note=f"{stream_small / mib:.0f} -> {stream_large / mib:.0f} MiB",
            extra={"growth": stream_large / stream_small},
        )
    )
    b.add(
        Row(
            f"4. peak RSS loading the COCO export, {growth}",
            "disk",
            load_large / mib,
            load_small / mib,
            "MiB",
            "grows with data",
            higher_is_better=False,
            note=f"{load_small / mib:.0f} -> {load_large / mib:.0f} MiB",
            extra={"growth": load_large / load_small},
        )
    )


def concurrency_figures(b: Bench) -> None:
    """1, 4 and 16 concurrent metadata-only streaming clients against one server process and
    against ``--workers 2``: aggregate items/s and the server's CPU per item."""
    from benchmarks import bench_concurrency

    cfg = b.cfg
    built = build_metadata(b.work / "meta-concurrency", cfg.concurrency_files, cfg.per_file)
    b.log(
        f"concurrent clients ({cfg.concurrency_files} files, {', '.join(map(str, cfg.clients))} clients, "
        f"--workers {' and '.join(map(str, SERVER_FORMS))}, {cfg.repeats} interleaved rounds)"
    )
    results = b.attempt(
        "concurrency",
        lambda: bench_concurrency.measure(
            built.store, built.project, built.key, list(cfg.clients), list(SERVER_FORMS), cfg.repeats, b.log
        ),
    )
    if isinstance(results, str):
        b.add(
            Row(
                "10. concurrent metadata streaming",
                "loopback",
                None,
                None,
                "items/s",
                "reported",
                note=results,
            )
        )
        return
    for (workers, clients), runs in results.items():
        rate = bench_concurrency.summary(runs, "items_per_s")
        cpu = bench_concurrency.summary(runs, "server_cpu_ms_per_item")
        b.add(
            Row(
                f"10. concurrent metadata streaming, {clients} client{'s' if clients > 1 else ''}",
                f"loopback, --workers {workers}",
                rate[0],
                None,
                "items/s",
                "reported",
                note=f"range {rate[1]:,.0f}-{rate[2]:,.0f}; server {cpu[0]:.3f} CPU-ms/item "
                f"({cpu[1]:.3f}-{cpu[2]:.3f})",
                extra={"server_cpu_ms_per_item": cpu[0]},
            )
        )


def query_figures(b: Bench) -> None:
    """The same queries on the same set in annostream (HTTP) and FiftyOne, to first item and to
    count, and each side's building rate."""
    from benchmarks import query_peers

    n = b.cfg.query_peer_files
    if n is None:
        b.log("FiftyOne query peer skipped in --quick (its own virtual environment and a mongod)")
        return
    missing = query_peers.fiftyone_missing()
    if missing:
        b.log(f"[yellow]FiftyOne query peer skipped: {missing}[/yellow]")
        b.add(Row("11. queries vs FiftyOne", "-", None, None, "s", "faster", note=missing))
        return
    got = b.attempt(
        "FiftyOne queries",
        lambda: query_peers.compare(b.work, n, b.cfg.per_file, b.cfg.query_rounds, b.log),
    )
    if isinstance(got, str):
        b.add(Row("11. queries vs FiftyOne", "-", None, None, "s", "faster", note=got))
        return
    label = f"{n // 1000}k files / {n * b.cfg.per_file / 1e6:g}M boxes"
    fo = got["fiftyone"]
    b.add(
        Row(
            f"11. building the set: import json vs FiftyOne {fo['version']} add_samples ({label})",
            "in-process",
            got["ours_files_per_s"],
            fo["samples_per_s"],
            "files/s",
            ">= 1.0x",
        )
    )
    for query in query_peers.QUERIES:
        ours, theirs = got["timings"][f"ours http|{query}"], got["timings"][f"fiftyone|{query}"]
        agree = "" if ours["n"] == theirs["n"] else f"; counts differ: {ours['n']} vs {theirs['n']}"
        for what in ("first_item", "count"):
            per_round = [t / o for o, t in zip(ours[what], theirs[what], strict=True)]
            b.add(
                Row(
                    f"11. query '{query}' to {what.replace('_', ' ')} vs FiftyOne ({label})",
                    "loopback",
                    statistics.median(ours[what]),
                    statistics.median(theirs[what]),
                    "s",
                    ">= 1.0x",
                    higher_is_better=False,
                    note=f"median of {got['rounds']} rounds; per-round ratio "
                    f"{min(per_round):.2f}-{max(per_round):.2f}{agree}",
                    paired=statistics.median(per_round),
                )
            )


def stack_figures(b: Bench) -> None:
    """PostgreSQL + S3 (moto) beside SQLite + local blobs, with the server's time split."""
    quick = b.cfg is QUICK
    images, rounds, passes = (40, 1, 1) if quick else (200, max(b.cfg.repeats, 5), 3)
    b.log(f"stacks: {images} photos on SQLite+local and PostgreSQL+S3, {rounds} interleaved rounds")
    summ = bench_stacks.measure(
        b.work / "stacks",
        images,
        rounds,
        b.cfg.workers,
        b.cfg.batch_size,
        passes,
        min_items={} if quick else None,
    )
    labels = {
        "images": "to_pytorch epoch, images",
        "pinned": "to_pytorch epoch, images, pinned",
        "inline": "items:batch, blobs inline",
        "metadata": "items:batch, metadata only",
    }
    for mode, label in labels.items():
        base = summ[f"{mode} {bench_stacks.STACKS[0]}"]
        for stack in bench_stacks.STACKS[1:]:
            row = summ[f"{mode} {stack}"]
            ms = row["server_ms_per_item"]
            lo, hi = row["ratio_range"]
            b.add(
                Row(
                    f"9. {stack} vs SQLite+local ({label}, {images} photos)",
                    "loopback",
                    row["items_per_s"],
                    base["items_per_s"],
                    "items/s",
                    ">= 0.5x",
                    note=f"median of {rounds} rounds; per-round {lo:.2f}-{hi:.2f}x; server ms/item: "
                    f"database {ms['database']:.2f}, object store {ms['object_store']:.2f}, framing "
                    f"{ms['framing'] - ms['object_store']:.2f}; server CPU {ms['cpu']:.2f}, moto CPU "
                    f"{ms[bench_stacks.S3_CPU]:.2f}",
                    paired=row["ratio"],
                )
            )


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
    parser.add_argument(
        "--only",
        choices=["images", "metadata", "stacks", "concurrency", "queries", "scale"],
        help="run one group of figures",
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=0,
        metavar="FILES",
        help="also build a FILES-file metadata store (10 instances each) through the import pipeline on "
        "SQLite and PostgreSQL, and measure it (benchmarks/bench_scale.py; 1000000 for the full figure)",
    )
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    console = Console(width=max(150, Console().width))
    b = Bench(cfg, args.work, console)
    t0 = time.perf_counter()
    if args.only in (None, "images"):
        b.log(f"building {cfg.images} photographs")
        built = build_images(args.work / "images", cfg.images)
        server_cpu_figures(b, built)
        image_figures(b, built)
    if args.only in (None, "metadata"):
        b.log(f"building metadata stores: {cfg.meta_files} and {cfg.meta_small_files} files")
        large = build_metadata(args.work / "meta-large", cfg.meta_files, cfg.per_file)
        small = build_metadata(args.work / "meta-small", cfg.meta_small_files, cfg.per_file)
        metadata_figures(b, large, small)
    if args.only in (None, "stacks"):
        b.attempt("stacks", lambda: stack_figures(b))
    if args.only in (None, "concurrency"):
        concurrency_figures(b)
    if args.only in (None, "queries"):
        query_figures(b)
    if args.scale and args.only in (None, "scale"):
        b.log(f"scale: {args.scale:,} files through the import pipeline, SQLite and PostgreSQL")
        scale = bench_scale.parse(
            [
                "--files",
                str(args.scale),
                "--small",
                str(min(cfg.meta_files, args.scale)),
                "--work",
                str(args.work / "scale"),
            ]
        )
        for row in bench_scale.run(scale):
            b.add(Row(**{k: v for k, v in row.items() if k != "ratio"}))
    mode = "quick" if args.quick else "full"
    machine = (
        f"{os.cpu_count()} cores, {_memory_gib():.0f} GiB, {platform.machine()}, "
        f"Python {platform.python_version()}"
    )
    console.print(render(b.rows, f"annostream benchmarks ({mode}; {machine})"))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{mode}.json"
    out.write_text(
        json.dumps(
            {
                "mode": mode,
                "machine": machine,
                "config": asdict(cfg),
                "decoder": epoch.DECODER,
                "seconds": time.perf_counter() - t0,
                "load": os.getloadavg(),
                "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                "rows": [{**asdict(r), "ratio": r.ratio} for r in b.rows],
            },
            indent=2,
        )
    )
    console.print(f"results written to {out} in {time.perf_counter() - t0:.0f} s")
    return 0


def _memory_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


if __name__ == "__main__":
    sys.exit(main())
