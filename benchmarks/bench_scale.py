"""Scale: a metadata-only store of 1M files / 10M instances, built through the import pipeline.

    python -m benchmarks.bench_scale [--files 1000000] [--small 100000] [--stack sqlite pg]

For each stack (SQLite; PostgreSQL on a private server this bench starts with initdb on a
free port and stops again) it builds two stores from one seeded generator
(:func:`benchmarks.data.scale_source`), ``--files`` and ``--small`` files of ``--per-file``
instances, through ``import_source`` (the pipeline every import takes: stage, then one
transaction), and reports the build rate (instances/s) and bytes on disk per instance. Then,
against a server on loopback, the large store's: ``labels.cat > 2`` and ``attributes.weather
= rain`` to first item and to count; random ``ds[i]`` latency (p50, p99); time to the first
batch beside exporting the dataset as COCO and loading it (``benchmarks.meta``); and peak RSS
of a full metadata pass over each store, each in a fresh process. Every figure carries the
load average when it was taken. Figures are reported, never asserted.

With ``--work DIR`` the stores stay in ``DIR/<stack>/{small,large}`` and each finished build
writes ``<name>.build.json`` beside its folder (files, instances per file, seed, the build's
figures, the viewer key); ``--reuse`` measures a store again whose build file names the same
files / per-file / seed instead of building it (a store of an older schema is migrated when
opened, and that time reported), and ``--build-only`` builds (or keeps) without measuring.
PostgreSQL's data folder stays in ``DIR/pg/services/pg`` and is started again from it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks import meta
from benchmarks.data import PROJECT, Built, scale_source

QUERIES = ("labels.cat > 2", "attributes.weather = rain")


def _load() -> str:
    return "load {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())


@contextlib.contextmanager
def postgres(root: Path, reuse: bool = False) -> Iterator[Callable[[], str]]:
    """A private PostgreSQL (initdb, a free loopback port), stopped on exit; yields a maker of
    fresh databases (their URLs). With ``reuse`` a data folder left in ``root`` is started again."""
    from tests import services

    root.mkdir(parents=True, exist_ok=True)
    pg = root / "pg"
    if reuse and (pg / "pgdata").is_dir() and (pg / "options").is_file():
        url = restart_kept_postgres(pg, root.parent)
    else:
        services.stop_postgres(pg)
        shutil.rmtree(pg, ignore_errors=True)
        for stale in root.parent.glob("*.build.json"):  # their databases went with the old server
            stale.unlink()
        url = services.start_postgres(pg)
    try:
        yield services.Services(url, "").create_database
    finally:
        services.stop_postgres(pg)


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def restart_kept_postgres(pg: Path, stores: Path) -> str:
    """Start a kept PostgreSQL from its data folder: on its old port, or on a free one when
    that is taken (the options and every store pointer under ``stores`` rewritten to it)."""
    from annostream.server.launch import free_port
    from tests import services

    options = (pg / "options").read_text()
    match = re.search(r"-p (\d+)", options)
    assert match, f"no port in {pg / 'options'}"
    port = int(match.group(1))
    if not _port_free(port):
        new = free_port()
        (pg / "options").write_text(options.replace(f"-p {port}", f"-p {new}"))
        for pointer in stores.glob("*/store.json"):
            text = pointer.read_text().replace(f"@127.0.0.1:{port}/", f"@127.0.0.1:{new}/")
            pointer.write_text(text)
        port = new
    services.restart_postgres(pg, down_for=0.0)
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"


def store_dir(path: Path, new_database: Callable[[], str] | None) -> Path:
    """An empty store folder: SQLite, or a pointer to a new PostgreSQL database (local blobs)."""
    from annostream.client.transports.embedded import close_store

    close_store(path)  # this process's open Store on an earlier build there
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    if new_database is not None:
        pointer = {"db": new_database(), "blobs": str(path / "blobs")}
        (path / "store.json").write_text(json.dumps(pointer))
    return path


def build(path: Path, n_files: int, per_file: int, seed: int = 0) -> tuple[Built, dict[str, Any]]:
    """The store, imported through ``import_source``; and the build's seconds and rates (and
    the load average at its start and its end)."""
    from annostream.client.transports import EmbeddedTransport

    local = EmbeddedTransport(path, create=True)
    local.create_project(PROJECT, "annostream scale benchmark", False)
    load = _load()
    t0, c0 = time.perf_counter(), time.process_time()
    result = local.import_source(PROJECT, "Default", scale_source(n_files, per_file, seed), "records")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    key = local.create_key(PROJECT, "viewer")
    built = Built(path, PROJECT, "Default", key, result["files"], result["instances"])
    rate = result["instances"] / seconds
    return built, {"seconds": seconds, "cpu": cpu, "rate": rate, "load": load, "load_end": _load()}


def build_file(path: Path) -> Path:
    """Where a kept store's build figures lie: beside its folder."""
    return path.with_name(f"{path.name}.build.json")


def kept(path: Path, n_files: int, per_file: int, seed: int) -> tuple[Built, dict[str, Any]] | None:
    """A store built earlier with the same files / per-file / seed (its build file says so), or
    None. A build file is written only once its store is complete."""
    record = build_file(path)
    if not record.is_file() or not path.is_dir():
        return None
    doc = json.loads(record.read_text())
    if (doc["files"], doc["per_file"], doc["seed"]) != (n_files, per_file, seed):
        return None
    built = Built(path, PROJECT, "Default", doc["key"], doc["files_built"], doc["instances"])
    return built, doc


def keep(built: Built, per_file: int, seed: int, figures: dict[str, Any]) -> dict[str, Any]:
    """Write the build file of a finished store; its contents."""
    doc = {
        "files": built.files,
        "per_file": per_file,
        "seed": seed,
        "files_built": built.files,
        "instances": built.instances,
        "key": built.key,
        "build": figures,
        "bytes": bytes_on_disk(built.store),
        "schema": schema_version(built.store),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    build_file(built.store).write_text(json.dumps(doc, indent=2))
    return doc


def _database_url(path: Path) -> str:
    pointer = path / "store.json"
    if pointer.is_file():
        return str(json.loads(pointer.read_text())["db"])
    return f"sqlite:///{path / 'annostream.db'}"


def schema_version(path: Path) -> str | None:
    """The store's Alembic revision, read without migrating it."""
    import sqlalchemy as sa

    engine = sa.create_engine(_database_url(path))
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def open_kept(path: Path) -> dict[str, Any]:
    """Open a kept store once (which migrates an older schema): the seconds it took and the
    revisions before and after; SQLite's write-ahead log is truncated after the migration."""
    from annostream.store import Store

    before = schema_version(path)
    load = _load()
    t0, c0 = time.perf_counter(), time.process_time()
    Store.open(path, create=False).close()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    checkpoint(path)
    return {"seconds": seconds, "cpu": cpu, "from": before, "to": schema_version(path), "load": load}


def checkpoint(path: Path) -> None:
    """Truncate a SQLite store's write-ahead log (it keeps the size of the largest transaction:
    gigabytes after a 10M-instance import); nothing for PostgreSQL."""
    import sqlite3

    if (path / "store.json").is_file() or not (path / "annostream.db").is_file():
        return
    with contextlib.closing(sqlite3.connect(path / "annostream.db")) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def bytes_on_disk(path: Path) -> int:
    """The store's size: its folder (SQLite file, WAL, blobs), plus its PostgreSQL database."""
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    pointer = path / "store.json"
    if pointer.is_file():
        import psycopg

        dsn = json.loads(pointer.read_text())["db"].replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
            assert row is not None
            size += int(row[0])
    return size


def _median_min(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def queries(url: str, built: Built, repeat: int) -> dict[str, Any]:
    """Each query to first item and to count (fresh handles; the first run warms up)."""
    out: dict[str, Any] = {}
    for query in QUERIES:
        runs = [meta.query_latency(url, built.project, built.key, query) for _ in range(repeat + 1)][1:]
        out[query] = {
            "first_item": _median_min([r["first_item"] for r in runs]),
            "count": _median_min([r["count"] for r in runs]),
            "load": _load(),
        }
    return out


def in_process(path: Path, repeat: int, n_random: int, seed: int = 1) -> dict[str, Any]:
    """The same reads on the embedded transport, as wall and CPU seconds of this process: with
    SQLite the database runs in this process, so its CPU time is what the reads cost whatever
    else the machine is doing (a loaded machine stretches the wall time, not this)."""
    from annostream import Project

    project = Project(PROJECT, host=f"file://{path.resolve()}")
    ds = project.dataset("Default")
    out: dict[str, Any] = {"load": _load()}

    def timed(fn: Callable[[], Any]) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - t0, time.process_time() - c0

    for query in QUERIES:
        firsts, counts = [], []
        for n in range(repeat + 1):
            view = ds.slice(query)
            first = timed(lambda view=view: next(iter(view)))  # type: ignore[misc]
            view = ds.slice(query)
            count = timed(view.count)
            if n:  # the first run warms up
                firsts.append(first)
                counts.append(count)
        out[query] = {
            "first_item": {
                "wall": statistics.median(w for w, _ in firsts),
                "cpu": statistics.median(c for _, c in firsts),
            },
            "count": {
                "wall": statistics.median(w for w, _ in counts),
                "cpu": statistics.median(c for _, c in counts),
            },
        }
    total = len(ds.ids)
    rng = random.Random(seed)
    reads = sorted((timed(lambda: ds[rng.randrange(total)]) for _ in range(n_random)), key=lambda t: t[1])
    out["random_cpu_p50"] = reads[len(reads) // 2][1]
    out["random_wall_p50"] = sorted(w for w, _ in reads)[len(reads) // 2]
    return out


def random_access(url: str, built: Built, n: int, seed: int = 1) -> dict[str, Any]:
    """``ds[i]`` at ``n`` random indices of the whole dataset: the id list first, then each item."""
    ds = meta._project(url, built.project, built.key).dataset("Default")
    t0 = time.perf_counter()
    total = len(ds.ids)
    ids_s = time.perf_counter() - t0
    rng = random.Random(seed)
    times = []
    for _ in range(n):
        i = rng.randrange(total)
        t0 = time.perf_counter()
        sample = ds[i]
        times.append(time.perf_counter() - t0)
        assert sample["file"]["name"]
    times.sort()
    return {
        "ids_s": ids_s,
        "p50": times[len(times) // 2],
        "p99": times[min(len(times) - 1, int(len(times) * 0.99))],
        "n": n,
        "load": _load(),
    }


def export_then_load(url: str, built: Built, out: Path) -> dict[str, Any]:
    """Export as COCO (annotations only), then load it in a fresh process: seconds of each and
    the loader's peak RSS."""
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    path = meta.write_export(url, built.project, built.key, out)
    export_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rss = meta.peak_rss("load", str(path))
    load_s = time.perf_counter() - t0
    size = path.stat().st_size
    shutil.rmtree(out, ignore_errors=True)
    return {"export_s": export_s, "load_s": load_s, "rss": rss, "json_bytes": size, "load": _load()}


PARTS = ("queries", "random", "first_batch", "in_process", "export", "rss")


def measure(built: Built, small: Built | None, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The figures of ``args.parts`` (every part but those ``--no-export`` / ``--no-rss`` drop)."""
    from annostream.server.launch import running_server

    parts = (
        set(args.parts) - ({"export"} if not args.export else set()) - ({"rss"} if not args.rss else set())
    )
    figures: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(running_server(built.store))
        if "queries" in parts:
            log(f"queries ({_load()})")
            figures["queries"] = queries(url, built, args.repeat)
        if "random" in parts:
            log(f"random ds[i] ({_load()})")
            figures["random"] = random_access(url, built, args.random)
        if "first_batch" in parts:
            log(f"first batch ({_load()})")
            figures["first_batch"] = {
                "s": min(meta.first_batch(url, built.project, built.key) for _ in range(3)),
                "load": _load(),
            }
        if "in_process" in parts:
            log(f"the same reads in-process, wall and CPU ({_load()})")
            figures["in_process"] = in_process(built.store, args.repeat, args.random)
        if "export" in parts:
            log(f"export then load ({_load()})")
            figures["export_then_load"] = export_then_load(url, built, work / "export")
        if "rss" in parts and small is not None:
            small_url = stack.enter_context(running_server(small.store))
            log(f"peak RSS of a full metadata pass: {small.files:,} then {built.files:,} files ({_load()})")
            rss: dict[str, Any] = {}
            for name, b, u in (("small", small, small_url), ("large", built, url)):
                t0 = time.perf_counter()
                rss[name] = meta.peak_rss("stream", u, b.project, json.dumps(b.key))
                rss[f"{name}_s"] = time.perf_counter() - t0
            rss["load"] = _load()
            figures["rss"] = rss
        log(f"measured ({_load()})")
    return figures


def log(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


def store(
    stack: str, path: Path, n_files: int, args: argparse.Namespace, new_db: Callable[[], str] | None
) -> tuple[Built, dict[str, Any]]:
    """A store of ``n_files``: kept from an earlier run (with ``--reuse``, opened once to migrate
    it, that time in ``"opened"``), or built now; and its build figures."""
    found = kept(path, n_files, args.per_file, args.seed) if args.reuse else None
    if found is not None:
        built, doc = found
        log(
            f"{stack}: reusing {built.files:,} files built {doc['date']} ({doc['schema']}); "
            f"opening ({_load()})"
        )
        opened = doc["opened"] = open_kept(path)
        log(f"{stack}: opened in {opened['seconds']:.1f} s ({opened['from']} -> {opened['to']})")
        return built, doc
    log(f"{stack}: building {n_files:,} files x {args.per_file} instances ({_load()})")
    build_file(path).unlink(missing_ok=True)
    built, figures = build(store_dir(path, new_db), n_files, args.per_file, args.seed)
    checkpoint(path)
    doc = keep(built, args.per_file, args.seed, figures)
    log(
        f"{stack}: built {built.instances:,} instances in {figures['seconds']:.0f} s "
        f"({figures['rate']:,.0f}/s, {figures['load']}); {doc['bytes'] / built.instances:.0f} bytes/instance"
    )
    return built, doc


def run_stack(stack: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Build (or keep) both stores on ``stack`` and measure; the figures as a dict."""
    with contextlib.ExitStack() as es:
        new_db = es.enter_context(postgres(work / "services", args.reuse)) if stack == "pg" else None
        result: dict[str, Any] = {"stack": stack, "files": args.files, "per_file": args.per_file}
        small = None
        if args.small:
            small, doc = store(stack, work / "small", args.small, args, new_db)
            result["build_small"] = doc["build"]
        large, doc = store(stack, work / "large", args.files, args, new_db)
        result["build"], result["bytes"], result["instances"] = doc["build"], doc["bytes"], large.instances
        if "opened" in doc:
            result["opened"] = doc["opened"]
        if not args.build_only:
            result.update(measure(large, small, work, args))
        result["small_files"] = small.files if small else None
    return result


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The figures as rows of ``benchmarks.run``'s table (figure, link, ours, baseline, ...)."""
    stack = {"sqlite": "SQLite", "pg": "PostgreSQL"}[result["stack"]]
    label = f"{result['files'] / 1e6:g}M files / {result['instances'] / 1e6:g}M instances, {stack}"

    def row(
        figure: str,
        ours: float | None,
        unit: str,
        target: str,
        note: str = "",
        baseline: float | None = None,
        link: str = "loopback",
        higher: bool = True,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        ratio = None
        if ours and baseline:
            ratio = ours / baseline if higher else baseline / ours
        return {
            "figure": f"{figure} ({label})",
            "link": link,
            "ours": ours,
            "baseline": baseline,
            "unit": unit,
            "target": target,
            "higher_is_better": higher,
            "note": note,
            "extra": extra or {},
            "ratio": ratio,
        }

    b = result["build"]
    out = [
        row(
            "9. build through the import pipeline",
            b["rate"],
            "instances/s",
            "reported",
            note=f"{b['seconds']:.0f} s, {b['cpu']:.0f} CPU-s; {b['load']}"
            + (f" at the start, {b['load_end']} at the end" if "load_end" in b else ""),
            link="in-process",
        ),
        row(
            "9. bytes on disk per instance",
            result["bytes"] / result["instances"],
            "bytes",
            "reported",
            link="disk",
            higher=False,
        ),
    ]
    if "opened" in result:
        o = result["opened"]
        out.append(
            row(
                f"9. opening the kept store (schema {o['from']} -> {o['to']})",
                o["seconds"],
                "s",
                "reported",
                note=(f"CPU {o['cpu']:.1f} s; " if o.get("cpu") is not None else "") + o["load"],
                link="in-process",
                higher=False,
            )
        )
    targets = {"first_item": "< 200 ms", "count": "< 1 s"}
    for query, q in result.get("queries", {}).items():
        for what, target in targets.items():
            out.append(
                row(
                    f"9. query '{query}' to {what.replace('_', ' ')}",
                    q[what]["median"],
                    "s",
                    target,
                    note=f"median of runs, range {q[what]['min']:.3f}-{q[what]['max']:.3f}; {q['load']}",
                    higher=False,
                )
            )
    ip = result.get("in_process", {})
    for query in QUERIES:
        for what in ("first_item", "count") if query in ip else ():
            t = ip[query][what]
            out.append(
                row(
                    f"9. query '{query}' to {what.replace('_', ' ')}, CPU in-process",
                    t["cpu"],
                    "CPU-s",
                    targets[what],
                    note=f"embedded; wall {t['wall']:.3f} s at {ip['load']}",
                    link="in-process",
                    higher=False,
                )
            )
    if ip:
        out.append(
            row(
                "9. random ds[i] p50, CPU in-process",
                ip["random_cpu_p50"],
                "CPU-s",
                "< 5 ms",
                note=f"embedded; wall p50 {ip['random_wall_p50'] * 1000:.1f} ms at {ip['load']}",
                link="in-process",
                higher=False,
            )
        )
    if "random" in result:
        r = result["random"]
        out.append(
            row(
                "9. random ds[i] p50",
                r["p50"],
                "s",
                "< 5 ms",
                higher=False,
                note=f"p99 {r['p99'] * 1000:.1f} ms over {r['n']}; id list first {r['ids_s']:.2f} s; "
                f"{r['load']}",
            )
        )
    if "export_then_load" in result and "first_batch" in result:
        e = result["export_then_load"]
        out.append(
            row(
                "9. time to first batch vs export+load",
                result["first_batch"]["s"],
                "s",
                ">= 200x sooner",
                baseline=e["export_s"] + e["load_s"],
                higher=False,
                note=f"export {e['export_s']:.0f} s + load {e['load_s']:.0f} s; {e['load']}",
            )
        )
    elif "first_batch" in result:
        f = result["first_batch"]
        out.append(row("9. time to first batch", f["s"], "s", "reported", note=f["load"], higher=False))
    if "rss" in result:
        r = result["rss"]
        mib = 2**20
        out.append(
            row(
                f"9. peak RSS of a full metadata pass, {result['small_files']:,} -> {result['files']:,} "
                "files",
                r["large"] / mib,
                "MiB",
                "flat",
                baseline=r["small"] / mib,
                higher=False,
                note=f"{r['small'] / mib:.0f} -> {r['large'] / mib:.0f} MiB; passes {r['small_s']:.0f} s, "
                f"{r['large_s']:.0f} s; {r['load']}",
                extra={"growth": r["large"] / r["small"]},
            )
        )
    return out


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--per-file", type=int, default=10)
    parser.add_argument(
        "--small", type=int, default=100_000, help="the store the memory is compared with (0: none)"
    )
    parser.add_argument("--stack", nargs="+", choices=["sqlite", "pg"], default=["sqlite", "pg"])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--random", type=int, default=500, help="random ds[i] reads")
    parser.add_argument(
        "--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure (default: all)"
    )
    parser.add_argument("--no-export", dest="export", action="store_false", help="skip export+load")
    parser.add_argument("--no-rss", dest="rss", action="store_false", help="skip the full metadata passes")
    parser.add_argument(
        "--work", type=Path, default=None, help="where stores are built (default: a temp dir)"
    )
    parser.add_argument("--seed", type=int, default=0, help="the generator's seed")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="measure stores kept in --work by an earlier run with the same files/per-file/seed",
    )
    parser.add_argument(
        "--build-only", action="store_true", help="build (or keep) the stores, measure nothing"
    )
    parser.add_argument(
        "--in-process-only",
        type=Path,
        default=None,
        metavar="STORE",
        help="only the in-process reads of a built store",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "scale.json")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every stack asked for; the rows of all (also written to ``args.out``, which
    ``python -m benchmarks.report`` renders)."""
    results, t0 = [], time.perf_counter()
    with contextlib.ExitStack() as es:
        work = args.work or Path(es.enter_context(tempfile.TemporaryDirectory(prefix="annostream-scale-")))
        work.mkdir(parents=True, exist_ok=True)
        work.chmod(0o755)  # PostgreSQL runs as its own user and must reach its folder inside
        for stack in args.stack:
            results.append(run_stack(stack, work / stack, args))
            if args.work is None:
                shutil.rmtree(work / stack, ignore_errors=True)
    all_rows = [r for res in results for r in rows(res)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "mode": "scale",
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "seconds": time.perf_counter() - t0,
        "results": results,
        "rows": all_rows,
    }
    args.out.write_text(json.dumps(doc, indent=2))
    return all_rows


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.in_process_only is not None:
        print(json.dumps(in_process(args.in_process_only, args.repeat, args.random), indent=2))
        return 0
    for r in run(args):
        ratio = f" ({r['ratio']:.0f}x)" if r["ratio"] else ""
        figure = f"{r['figure']} [{r['link']}]: {r['ours']:.4g} {r['unit']}{ratio}"
        print(f"{figure}; target {r['target']}; {r['note']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
