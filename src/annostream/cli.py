"""The ``annostream`` command: serve a store, manage projects and keys, import, inspect.

Every command except ``serve`` works on a local folder (``--data DIR``, embedded) or on a
server (``--host URL`` with a key); both go through the SDK's transports, so the CLI holds
no logic of its own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from annostream.client.transports import EmbeddedTransport, Transport, connect
from annostream.errors import AnnostreamError

app = typer.Typer(help="annostream: an annotation store with a streaming SDK.", no_args_is_help=True)
project_app = typer.Typer(help="Projects.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
import_app = typer.Typer(help="Bulk imports (one transaction each).", no_args_is_help=True)
app.add_typer(project_app, name="project")
app.add_typer(keys_app, name="keys")
app.add_typer(import_app, name="import")

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

DataOpt = Annotated[Optional[Path], typer.Option("--data", help="Local store folder (embedded).",
                                                 envvar="ANNOSTREAM_DATA")]
HostOpt = Annotated[Optional[str], typer.Option("--host", help="Server URL.", envvar="ANNOSTREAM_HOST")]
IdOpt = Annotated[Optional[str], typer.Option("--client-id", envvar="ANNOSTREAM_CLIENT_ID")]
SecretOpt = Annotated[Optional[str], typer.Option("--client-secret", envvar="ANNOSTREAM_CLIENT_SECRET")]


def _transport(data: Path | None, host: str | None, client_id: str | None,
               client_secret: str | None) -> Transport:
    if data is not None:
        return EmbeddedTransport(data)
    if host is None:
        raise typer.BadParameter("give --data DIR (a local store) or --host URL (a server)")
    return connect(host, client_id, client_secret)


def _progress(description: str) -> Progress:
    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=True)


def _fail(exc: AnnostreamError) -> None:
    console.print(f"[red]error:[/red] {exc.message}")
    raise typer.Exit(1)


ADMIN_KEY_FILE = "server-admin.key"


@app.command()
def serve(
    data: DataOpt = Path("data"),
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8085,
    workers: Annotated[int, typer.Option(help="Server processes.")] = 1,
    init: Annotated[bool, typer.Option("--init", help=(
        "If the store has no server admin key, mint one and write it to "
        f"DATA/{ADMIN_KEY_FILE} (mode 0600); the secret is never printed."))] = False,
    db: Annotated[Optional[str], typer.Option(help="Database URL (default: SQLite in --data).",
                                              envvar="ANNOSTREAM_DB")] = None,
    blobs: Annotated[Optional[str], typer.Option(help="Blob store URL (default: --data/blobs).",
                                                 envvar="ANNOSTREAM_BLOBS")] = None,
    public_url: Annotated[Optional[str], typer.Option(
        "--public-url", help="Base URL clients reach this server at (signed links start with it; "
        "default: the bound address, never the request's Host header).",
        envvar="ANNOSTREAM_PUBLIC_URL")] = None,
    cors_origin: Annotated[Optional[list[str]], typer.Option(
        "--cors-origin", help="An origin browsers may call from (repeatable; default: none).")] = None,
) -> None:
    """Serve a store over HTTP (the native API and the Diffgram-compatible routes)."""
    import uvicorn

    from annostream.service.projects import create_server_admin_key, has_server_admin_key
    from annostream.store import Store

    os.umask(0o077)  # everything the server writes (database, blobs, spools, keys) is private
    os.environ["ANNOSTREAM_DATA"] = str(data)
    os.environ["ANNOSTREAM_PUBLIC_URL"] = public_url or f"http://{host}:{port}"
    if cors_origin:
        os.environ["ANNOSTREAM_CORS_ORIGINS"] = ",".join(cors_origin)
    for name, value in (("ANNOSTREAM_DB", db), ("ANNOSTREAM_BLOBS", blobs)):
        if value:
            os.environ[name] = value
    store = Store.open(data, db_url=db, blobs_url=blobs)
    if init:
        if has_server_admin_key(store):
            out.print("the store already has a server admin key: none minted")
        else:
            key = create_server_admin_key(store)
            path = data / ADMIN_KEY_FILE
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{key['client_id']}:{key['client_secret']}\n")
            out.print(f"server admin key {key['client_id']} written to {path} (mode 0600; "
                      "as client_id:client_secret)")
    store.close()
    uvicorn.run("annostream.server.app:app_from_env", factory=True, host=host, port=port,
                workers=workers, log_level="warning", access_log=False)


@project_app.command("create")
def project_create(
    string_id: str,
    public: Annotated[bool, typer.Option("--public", help="Anyone may read it.")] = False,
    name: Annotated[Optional[str], typer.Option(help="Display name.")] = None,
    data: DataOpt = None, host: HostOpt = None, client_id: IdOpt = None, client_secret: SecretOpt = None,
) -> None:
    """Create a project; prints its admin key once."""
    try:
        created = _transport(data, host, client_id, client_secret).create_project(string_id, name, public)
    except AnnostreamError as exc:
        _fail(exc)
    key = created["admin_key"]
    out.print(f"project {string_id} created")
    out.print(f"admin key (shown once): client_id={key['client_id']} client_secret={key['client_secret']}")


@keys_app.command("create")
def keys_create(
    project: Annotated[str, typer.Option("--project", help="Project string id.")],
    role: Annotated[str, typer.Option(help="viewer, editor or admin.")] = "viewer",
    data: DataOpt = None, host: HostOpt = None, client_id: IdOpt = None, client_secret: SecretOpt = None,
) -> None:
    """Create an API key on a project; prints it once."""
    if role not in ("viewer", "editor", "admin"):
        raise typer.BadParameter("role must be viewer, editor or admin")
    try:
        key = _transport(data, host, client_id, client_secret).create_key(project, role)  # type: ignore[arg-type]
    except AnnostreamError as exc:
        _fail(exc)
    out.print(f"{role} key for {project} (shown once): client_id={key['client_id']} "
              f"client_secret={key['client_secret']}")


@keys_app.command("list")
def keys_list(
    project: Annotated[Optional[str], typer.Option(
        "--project", help="Project string id; without it (local stores only), the server admin keys.")] = None,
    data: DataOpt = None, host: HostOpt = None, client_id: IdOpt = None, client_secret: SecretOpt = None,
) -> None:
    """List a project's keys: ids, roles, created, last used, revoked (never secrets)."""
    if project is None and data is None:
        raise typer.BadParameter("--project is needed on a server (server admin keys: --data DIR)")
    try:
        rows = _transport(data, host, client_id, client_secret).list_keys(project)
    except AnnostreamError as exc:
        _fail(exc)
    def when(stamp: str | None) -> str:
        return stamp[:16].replace("T", " ") if stamp else ""

    table = Table("role", "created (UTC)", "last used", "revoked")
    table.add_column("client_id", no_wrap=True)
    for k in rows:
        table.add_row(k["role"], when(k["created_at"]), when(k["last_used_at"]) or "never",
                      when(k["revoked_at"]), k["client_id"])
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The client_id of the key to revoke.")],
    project: Annotated[Optional[str], typer.Option(
        "--project", help="Project string id; without it (local stores only), a server admin key.")] = None,
    data: DataOpt = None, host: HostOpt = None, client_id: IdOpt = None, client_secret: SecretOpt = None,
) -> None:
    """Revoke a key: every request with it is refused (401) from now on."""
    if project is None and data is None:
        raise typer.BadParameter("--project is needed on a server (server admin keys: --data DIR)")
    try:
        revoked = _transport(data, host, client_id, client_secret).revoke_key(project, key_id)
    except AnnostreamError as exc:
        _fail(exc)
    out.print(f"key {revoked['client_id']} ({revoked['role']}) of {project or 'the server'} revoked "
              f"at {revoked['revoked_at']}")


@import_app.command("coco")
def import_coco(
    annotations: Annotated[Path, typer.Argument(help="COCO annotations JSON.", exists=True)],
    images: Annotated[Path, typer.Option("--images", help="Folder of the images.", exists=True)],
    project: Annotated[str, typer.Option("--project")],
    dataset: Annotated[str, typer.Option("--dataset")] = "Default",
    data: DataOpt = None, host: HostOpt = None, client_id: IdOpt = None, client_secret: SecretOpt = None,
) -> None:
    """Import a COCO file: all of it in one transaction, or nothing."""
    transport = _transport(data, host, client_id, client_secret)
    try:
        coco = json.loads(annotations.read_text())
    except json.JSONDecodeError as exc:
        console.print(f"[red]error:[/red] {annotations}: not valid JSON (line {exc.lineno}, column {exc.colno})")
        raise typer.Exit(1) from exc
    with _progress("importing") as bar:
        task = bar.add_task("import", total=len(coco.get("images", [])))
        try:
            result = transport.import_coco(project, dataset, coco, images,
                                           lambda n, total: bar.update(task, completed=n, total=total))
        except AnnostreamError as exc:
            _fail(exc)
    out.print(f"imported {result['files']} files and {result['instances']} instances into "
              f"{project}/{dataset} at revision {result['revision']}")

def _import_format(fmt: str, path: Path, project: str, dataset: str, transport: Transport) -> None:
    from annostream.formats import read_source

    with _progress("importing") as bar:
        task = bar.add_task("import", total=None)
        try:
            result = transport.import_source(project, dataset, read_source(fmt, path), fmt,
                                             lambda n, total: bar.update(task, completed=n, total=total or None))
        except AnnostreamError as exc:
            _fail(exc)
    out.print(f"imported {result['files']} files and {result['instances']} instances into "
              f"{project}/{dataset} at revision {result['revision']}")


@import_app.command("yolo")
def import_yolo(
    folder: Annotated[Path, typer.Argument(help="YOLO folder (data.yaml, images/, labels/).", exists=True)],
    project: Annotated[str, typer.Option("--project")],
    dataset: Annotated[str, typer.Option("--dataset")] = "Default",
    data: DataOpt = None, host: HostOpt = None, client_id: IdOpt = None, client_secret: SecretOpt = None,
) -> None:
    """Import a YOLO detection or segmentation folder: one transaction, or nothing."""
    _import_format("yolo", folder, project, dataset, _transport(data, host, client_id, client_secret))


@import_app.command("json")
def import_json(
    path: Annotated[Path, typer.Argument(help="annostream JSON export (folder or export.json), "
                                              "or a Diffgram JSON file.", exists=True)],
    project: Annotated[str, typer.Option("--project")],
    dataset: Annotated[str, typer.Option("--dataset")] = "Default",
    data: DataOpt = None, host: HostOpt = None, client_id: IdOpt = None, client_secret: SecretOpt = None,
) -> None:
    """Import an annostream JSON or Diffgram JSON export: one transaction, or nothing."""
    _import_format("json", path, project, dataset, _transport(data, host, client_id, client_secret))


@app.command("export")
def export(
    project: str, dataset: str,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the export into.")],
    fmt: Annotated[str, typer.Option("--format", help="json, coco, diffgram, yolo or yolo-seg.")] = "json",
    query_text: Annotated[Optional[str], typer.Option("--query", help='Export a slice, e.g. "labels.cat > 0".')] = None,
    as_of: Annotated[Optional[int], typer.Option("--as-of", help="Export the dataset as of a revision.")] = None,
    images: Annotated[str, typer.Option(help="copy, none, or link (symlinks; local stores).")] = "copy",
    data: DataOpt = None, host: HostOpt = None, client_id: IdOpt = None, client_secret: SecretOpt = None,
) -> None:
    """Export a dataset or a slice of it as a static format, streamed (constant memory)."""
    if images not in ("copy", "none", "link"):
        raise typer.BadParameter("--images must be copy, none or link")
    mode: bool | str = {"copy": True, "none": False, "link": "link"}[images]
    transport = _transport(data, host, client_id, client_secret)
    remote = not isinstance(transport, EmbeddedTransport)
    with _progress("downloading (bytes)" if remote else "exporting") as bar:
        task = bar.add_task("export", total=None)
        try:
            manifest = transport.export(project, dataset, fmt, out_dir, query_text, as_of, mode,
                                        lambda n, total: bar.update(task, completed=n, total=total))
        except AnnostreamError as exc:
            _fail(exc)
    out.print(f"exported {manifest['files']} files and {manifest['instances']} instances of "
              f"{project}/{dataset} at revision {manifest['revision']} as {fmt} into {out_dir}")


@app.command("ls")
def ls(
    project: Annotated[Optional[str], typer.Argument(help="List this project's datasets.")] = None,
    data: DataOpt = None, host: HostOpt = None, client_id: IdOpt = None, client_secret: SecretOpt = None,
) -> None:
    """List projects, or the datasets of one project, with counts."""
    transport = _transport(data, host, client_id, client_secret)
    try:
        if project is None:
            table = Table("project", "public", "datasets", "files", "revision")
            for p in transport.list_projects():
                table.add_row(p["string_id"], "yes" if p["is_public"] else "no", str(p["datasets"]),
                              str(p["files"]), str(p["revision"]))
        else:
            table = Table("dataset", "files")
            for d in transport.list_datasets(project, None):
                table.add_row(d["name"], str(d["files"]))
    except AnnostreamError as exc:
        _fail(exc)
    out.print(table)


@app.command("query")
def query(
    project: str, dataset: str, text: Annotated[str, typer.Argument(help='e.g. "labels.cat > 2"')],
    count: Annotated[bool, typer.Option("--count", help="Print only the number of matches.")] = False,
    limit: Annotated[int, typer.Option(help="Print at most this many files.")] = 20,
    data: DataOpt = None, host: HostOpt = None, client_id: IdOpt = None, client_secret: SecretOpt = None,
) -> None:
    """Print the files of a dataset that match a query (evaluated by the store)."""
    transport = _transport(data, host, client_id, client_secret)
    try:
        if count:
            n, rev = transport.count(project, dataset, text, None)
            out.print(f"{n} files match at revision {rev}")
            return
        ids, rev = transport.ids(project, dataset, text, None)
        shown = transport.items(project, ids[:limit].tolist(), rev, False) if len(ids) else []
    except AnnostreamError as exc:
        _fail(exc)
    table = Table("id", "name", "instances", title=f"{len(ids)} files match (revision {rev})")
    for item, _ in shown:
        table.add_row(str(item["id"]), item["file"]["name"], str(len(item["instances"])))
    out.print(table)


@app.command()
def demo(
    data: Annotated[Path, typer.Option("--data", help="Where to build the demo store.")] = Path("demo-data"),
    items: Annotated[int, typer.Option(help="Number of photographs to build.")] = 240,
) -> None:
    """Build a small dataset of real photographs, serve it, stream it, print a summary."""
    from annostream.demo import run_demo

    run_demo(data, items, out)


@app.command()
def bench(
    project: Annotated[str, typer.Option("--project", help="Project string id.")],
    dataset: Annotated[str, typer.Option("--dataset")] = "Default",
    query: Annotated[Optional[str], typer.Option(help="Also time this slice's first item and count.")] = None,
    items: Annotated[int, typer.Option(help="Read at most this many items per figure.")] = 2000,
    data: DataOpt = None, host: HostOpt = None, client_id: IdOpt = None, client_secret: SecretOpt = None,
) -> None:
    """Measure streaming from your own server: first batch, query latency, items/s, images/s."""
    import time

    from annostream.client.project import Project
    from annostream.client.sample import decode_image

    where = f"file://{data.resolve()}" if data is not None else host
    if where is None:
        raise typer.BadParameter("give --data DIR (a local store) or --host URL (a server)")
    table = Table("figure", "value", title=f"annostream bench: {project}/{dataset} at {where}")
    try:
        t0 = time.perf_counter()
        ds = Project(project, client_id, client_secret, host=where).dataset(dataset)
        first = iter(ds.with_options(decode=None))
        for _ in range(min(ds.batch_size, len(ds))):
            next(first)
        table.add_row("time to first batch (connect, ids, one batch)", f"{time.perf_counter() - t0:.3f} s")
        if query:
            t0 = time.perf_counter()
            next(iter(ds.slice(query)), None)
            table.add_row(f"query '{query}' to first item", f"{time.perf_counter() - t0:.3f} s")
            t0 = time.perf_counter()
            n = ds.slice(query).count()
            table.add_row(f"query '{query}' to count ({n})", f"{time.perf_counter() - t0:.3f} s")
        view = ds[:items].with_options(decode=None)
        t0 = time.perf_counter()
        n, nbytes, raw = 0, 0, []
        for sample in view:
            n += 1
            nbytes += len(sample["image"] or b"")
            if len(raw) < 200 and sample["image"]:
                raw.append(sample["image"])
        seconds = time.perf_counter() - t0
        table.add_row(f"streaming rate, {n} items", f"{n / seconds:,.0f} items/s, {nbytes / seconds / 1e6:.1f} MB/s")
        if raw:
            t0 = time.perf_counter()
            for blob in raw:
                decode_image(blob, "numpy")
            table.add_row("decode rate, one core (for comparison)", f"{len(raw) / (time.perf_counter() - t0):,.0f} images/s")
    except AnnostreamError as exc:
        _fail(exc)
    out.print(table)


@app.command("gc")
def gc(
    data: Annotated[Path, typer.Option("--data", help="Local store folder.", envvar="ANNOSTREAM_DATA")],
    older_than: Annotated[str, typer.Option("--older-than",
                                            help="A revision (needs --project) or an age: 7d, 12h, 30m.")],
    project: Annotated[Optional[str], typer.Option("--project", help="Only this project.")] = None,
    keep_tags: Annotated[bool, typer.Option(
        "--keep-tags/--no-keep-tags",
        help="Keep what tags point at (always: without it gc refuses to run if a tag is older "
             "than the cutoff).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, delete nothing.")] = False,
) -> None:
    """Delete history older than a cutoff (never automatic; never what a tag points at)."""
    from annostream.service.revisions import collect_garbage, parse_older_than
    from annostream.store import Store

    store = Store.open(data, create=False)
    try:
        report = collect_garbage(store, parse_older_than(older_than), project=project,
                                 keep_tags=keep_tags, dry_run=dry_run)
    except AnnostreamError as exc:
        _fail(exc)
    finally:
        store.close()
    verb = "would delete" if dry_run else "deleted"
    rows = sum(report.rows.values())
    cutoffs = ", ".join(f"{p}@{r}" for p, r in report.cutoffs.items()) or "no projects"
    out.print(f"gc ({cutoffs}): {verb} {rows} rows, {report.revisions} revisions, "
              f"{report.blobs} blobs")
    for table, n in sorted(report.rows.items()):
        if n:
            out.print(f"  {table}: {n}")


if __name__ == "__main__":
    app()
