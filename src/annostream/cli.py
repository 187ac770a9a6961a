"""The ``annostream`` command: serve a store, manage projects and keys, import, inspect.

Every command except ``serve`` works on a local folder (``--data DIR``, embedded) or on a
server (``--host URL`` with a key); both go through the SDK's transports, so the CLI holds
no logic of its own.

Invariants: user text (names, messages, queries) is never read as Rich markup; a user error
is one line on stderr saying what to do, with exit code 1, never a traceback; an explicit
``--data`` / ``--host`` beats ``ANNOSTREAM_DATA`` / ``ANNOSTREAM_HOST``.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from annostream.client.transports import EmbeddedTransport, Transport, connect
from annostream.errors import AnnostreamError
from annostream.extras import MissingExtra


def _one_line_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``command``; a user error (bad input, no store, no server, missing extra) ends
    as one line on stderr and exit code 1 instead of a traceback."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except AnnostreamError as exc:
            _fail(exc)
        except (MissingExtra, ValueError, OSError) as exc:
            console.print(f"error: {exc}", style="red", markup=False, highlight=False)
            raise typer.Exit(1) from None

    return run


app = typer.Typer(
    help="annostream: an annotation store with a streaming SDK.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
project_app = typer.Typer(help="Projects.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
import_app = typer.Typer(help="Bulk imports (one transaction each).", no_args_is_help=True)
app.add_typer(project_app, name="project")
app.add_typer(keys_app, name="keys")
app.add_typer(import_app, name="import")

# markup=False: names and messages are the user's text, printed as they are.
console = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)
out = Console(soft_wrap=True, markup=False, highlight=False)

# --data and --host read their environment variables in ``_where``, so that an explicit
# flag of either kind beats both variables.
DataOpt = Annotated[
    Path | None, typer.Option("--data", help="Local store folder (embedded). Default: $ANNOSTREAM_DATA.")
]
HostOpt = Annotated[str | None, typer.Option("--host", help="Server URL. Default: $ANNOSTREAM_HOST.")]
IdOpt = Annotated[str | None, typer.Option("--client-id", envvar="ANNOSTREAM_CLIENT_ID")]
SecretOpt = Annotated[str | None, typer.Option("--client-secret", envvar="ANNOSTREAM_CLIENT_SECRET")]
# typer shows "<bool>" beside a flag, which reads as if it took a value: show nothing.
FLAG = ""


def _where(data: Path | None, host: str | None) -> tuple[Path | None, str | None]:
    """(data, host) from the flags, else from the environment; exactly one of them set."""
    if data is not None and host is not None:
        raise ValueError("give --data DIR (a local store) or --host URL (a server), not both")
    if data is None and host is None:
        if os.environ.get("ANNOSTREAM_DATA"):
            return Path(os.environ["ANNOSTREAM_DATA"]), None
        if os.environ.get("ANNOSTREAM_HOST"):
            return None, os.environ["ANNOSTREAM_HOST"]
        raise ValueError(
            "give --data DIR (a local store) or --host URL (a server), "
            "or set ANNOSTREAM_DATA / ANNOSTREAM_HOST"
        )
    return data, host


def _transport(
    data: Path | None, host: str | None, client_id: str | None, client_secret: str | None
) -> Transport:
    data, host = _where(data, host)
    if data is not None:
        return EmbeddedTransport(data)
    assert host is not None
    return connect(host, client_id, client_secret)


def _progress(description: str) -> Progress:
    return Progress(
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def _fail(exc: AnnostreamError) -> None:
    console.print(f"error: {exc.message}", style="red")
    raise typer.Exit(1)


ADMIN_KEY_FILE = "server-admin.key"


@app.command()
def init(
    data: Annotated[Path, typer.Option("--data", help="Folder for the new store.")],
) -> None:
    """Create an empty store in a folder (stores are made only here, by project create and serve --init)."""
    from annostream.store import Store, is_store

    if is_store(data):
        out.print(f"{data} already holds a store; nothing changed")
        return
    Store.open(data, create=True).close()
    out.print(f"created an empty store at {data}; next: annostream project create NAME --data {data}")


@app.command()
def serve(
    data: Annotated[
        Path | None, typer.Option("--data", help="Store folder. Default: $ANNOSTREAM_DATA, else ./data.")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8085,
    workers: Annotated[int, typer.Option(help="Server processes.")] = 1,
    init: Annotated[
        bool,
        typer.Option(
            "--init",
            metavar=FLAG,
            help=(
                "Create the store if there is none; if it has no server admin key, mint one and write "
                f"it to DATA/{ADMIN_KEY_FILE} (mode 0600): the secret is never printed."
            ),
        ),
    ] = False,
    db: Annotated[
        str | None, typer.Option(help="Database URL (default: SQLite in --data).", envvar="ANNOSTREAM_DB")
    ] = None,
    blobs: Annotated[
        str | None, typer.Option(help="Blob store URL (default: --data/blobs).", envvar="ANNOSTREAM_BLOBS")
    ] = None,
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            help="Base URL clients reach this server at (signed links start with it; "
            "default: the bound address, never the request's Host header).",
            envvar="ANNOSTREAM_PUBLIC_URL",
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option("--cors-origin", help="An origin browsers may call from (repeatable; default: none)."),
    ] = None,
) -> None:
    """Serve a store over HTTP (the native API and the Diffgram-compatible routes)."""
    from annostream.extras import require

    uvicorn = require("uvicorn", "annostream serve")
    require("fastapi", "annostream serve")
    from annostream.server.banner import banner
    from annostream.service.projects import create_server_admin_key, has_server_admin_key
    from annostream.store import Store

    os.umask(0o077)  # everything the server writes (database, blobs, spools, keys) is private
    data = data if data is not None else Path(os.environ.get("ANNOSTREAM_DATA") or "data")
    os.environ["ANNOSTREAM_DATA"] = str(data)
    os.environ["ANNOSTREAM_PUBLIC_URL"] = public_url or f"http://{host}:{port}"
    if cors_origin:
        os.environ["ANNOSTREAM_CORS_ORIGINS"] = ",".join(cors_origin)
    for name, value in (("ANNOSTREAM_DB", db), ("ANNOSTREAM_BLOBS", blobs)):
        if value:
            os.environ[name] = value
    # An external database named explicitly is the store; a folder must hold one (or --init).
    store = Store.open(data, db_url=db, blobs_url=blobs, create=init or bool(db))
    if init:
        if data is None:
            raise typer.BadParameter("--init writes the key file into --data: give one")
        if has_server_admin_key(store):
            out.print("the store already has a server admin key: none minted")
        else:
            key = create_server_admin_key(store)
            path = data / ADMIN_KEY_FILE
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{key['client_id']}:{key['client_secret']}\n")
            out.print(
                f"server admin key {key['client_id']} written to {path} (mode 0600; "
                "as client_id:client_secret)"
            )
    try:
        out.print(banner(store, str(data), host, port))
    finally:
        store.close()
    uvicorn.run(
        "annostream.server.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=30,
        # longer than clients keep idle connections (httpx: 5 s), so that the client
        # always closes first and never sends a request on a connection being closed
        timeout_keep_alive=65,
        # the supervisor kills a worker that does not answer its ping in time; a worker still
        # importing on a loaded machine is slow, not hung (5 s, the default, restarts it forever)
        timeout_worker_healthcheck=60,
    )


@project_app.command("create")
def project_create(
    string_id: str,
    public: Annotated[bool, typer.Option("--public", metavar=FLAG, help="Anyone may read it.")] = False,
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    data: DataOpt = None,
    host: HostOpt = None,
    client_id: IdOpt = None,
    client_secret: SecretOpt = None,
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
    data: DataOpt = None,
    host: HostOpt = None,
    client_id: IdOpt = None,
    client_secret: SecretOpt = None,
) -> None:
    """Create an API key on a project; prints it once."""
    if role not in ("viewer", "editor", "admin"):
        raise ValueError(f"--role must be viewer, editor or admin, not '{role}'")
    try:
        key = _transport(data, host, client_id, client_secret).create_key(project, role)  # type: ignore[arg-type]
    except AnnostreamError as exc:
        _fail(exc)
    out.print(
        f"{role} key for {project} (shown once): client_id={key['client_id']} "
        f"client_secret={key['client_secret']}"
    )


KeysProjectOpt = Annotated[
    str | None,
    typer.Option("--project", help="Project string id; without it (local stores only), server admin keys."),
]


def _keys_transport(
    project: str | None, data: Path | None, host: str | None, client_id: str | None, client_secret: str | None
) -> Transport:
    """The transport for a keys command; server admin keys live only in a local store."""
    if project is None and data is None:
        raise typer.BadParameter("--project is needed on a server (server admin keys: --data DIR)")
    return _transport(data, host, client_id, client_secret)


@keys_app.command("list")
def keys_list(
    project: KeysProjectOpt = None,
    data: DataOpt = None,
    host: HostOpt = None,
    client_id: IdOpt = None,
    client_secret: SecretOpt = None,
) -> None:
    """List a project's keys: ids, roles, created, last used, revoked (never secrets)."""
    try:
        rows = _keys_transport(project, data, host, client_id, client_secret).list_keys(project)
    except AnnostreamError as exc:
        _fail(exc)

    def when(stamp: str | None) -> str:
        return stamp[:16].replace("T", " ") if stamp else ""

    table = Table("role", "created (UTC)", "last used", "revoked")
    table.add_column("client_id", no_wrap=True)
    for k in rows:
        table.add_row(
            k["role"],
            when(k["created_at"]),
            when(k["last_used_at"]) or "never",
            when(k["revoked_at"]),
            k["client_id"],
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The client_id of the key to revoke.")],
    project: KeysProjectOpt = None,
    data: DataOpt = None,
    host: HostOpt = None,
    client_id: IdOpt = None,
    client_secret: SecretOpt = None,
) -> None:
    """Revoke a key: every request with it is refused (401) from now on."""
    try:
        revoked = _keys_transport(project, data, host, client_id, client_secret).revoke_key(project, key_id)
    except AnnostreamError as exc:
        _fail(exc)
    out.print(
        f"key {revoked['client_id']} ({revoked['role']}) of {project or 'the server'} revoked "
        f"at {revoked['revoked_at']}"
    )


ProjectOpt = Annotated[str, typer.Option("--project", help="Project string id.")]
DatasetOpt = Annotated[str, typer.Option("--dataset", help="Dataset to import into (created if needed).")]
KeepDuplicatesOpt = Annotated[
    bool,
    typer.Option(
        "--keep-duplicates",
        help="Add files the dataset already holds (same name and bytes) again; by default they are skipped.",
    ),
]


def _import(
    fmt: str,
    path: Path,
    project: str,
    dataset: str,
    transport: Transport,
    keep_duplicates: bool,
    **options: Any,
) -> None:
    """Read ``path`` with the ``fmt`` reader and import it: one transaction, or nothing."""
    from annostream.client.uploads import run_import
    from annostream.formats import read_source

    with _progress("importing") as bar:
        task = bar.add_task("import", total=None)
        try:
            result = run_import(
                transport,
                project,
                dataset,
                read_source(fmt, path, **options),
                fmt,
                lambda n, total: bar.update(task, completed=n, total=total or None),
                "keep" if keep_duplicates else "skip",
            )
        except AnnostreamError as exc:
            _fail(exc)
    skipped = f", skipped {result['skipped']} already in the dataset" if result.get("skipped") else ""
    out.print(
        f"imported {result['files']} files and {result['instances']} instances into "
        f"{project}/{dataset} at revision {result['revision']}{skipped}",
        markup=False,
    )


@import_app.command("coco")
def import_coco(
    annotations: Annotated[Path, typer.Argument(help="COCO annotations JSON.")],
    images: Annotated[
        Path, typer.Option("--images", help="Folder of the images (only files inside it are read).")
    ],
    project: ProjectOpt,
    dataset: DatasetOpt = "Default",
    shapes: Annotated[
        str,
        typer.Option(
            "--shapes",
            help="auto: polygons where the segmentation has them, keypoints, else boxes; "
            "box: one box per annotation from its bbox; polygon: polygons only.",
        ),
    ] = "auto",
    keep_duplicates: KeepDuplicatesOpt = False,
    data: DataOpt = None,
    host: HostOpt = None,
    client_id: IdOpt = None,
    client_secret: SecretOpt = None,
) -> None:
    """Import a COCO file: all of it in one transaction, or nothing."""
    if shapes not in ("auto", "box", "polygon"):
        raise typer.BadParameter("--shapes must be auto, box or polygon")
    _import(
        "coco",
        annotations,
        project,
        dataset,
        _transport(data, host, client_id, client_secret),
        keep_duplicates,
        images=images,
        shapes=shapes,
    )


@import_app.command("yolo")
def import_yolo(
    folder: Annotated[Path, typer.Argument(help="YOLO folder (data.yaml, images/, labels/).")],
    project: ProjectOpt,
    dataset: DatasetOpt = "Default",
    keep_duplicates: KeepDuplicatesOpt = False,
    data: DataOpt = None,
    host: HostOpt = None,
    client_id: IdOpt = None,
    client_secret: SecretOpt = None,
) -> None:
    """Import a YOLO detection or segmentation folder: one transaction, or nothing."""
    _import(
        "yolo", folder, project, dataset, _transport(data, host, client_id, client_secret), keep_duplicates
    )


@import_app.command("json")
def import_json(
    path: Annotated[
        Path, typer.Argument(help="annostream JSON export (folder or export.json), or a Diffgram JSON file.")
    ],
    project: ProjectOpt,
    dataset: DatasetOpt = "Default",
    keep_duplicates: KeepDuplicatesOpt = False,
    data: DataOpt = None,
    host: HostOpt = None,
    client_id: IdOpt = None,
    client_secret: SecretOpt = None,
) -> None:
    """Import an annostream JSON or Diffgram JSON export: one transaction, or nothing."""
    _import("json", path, project, dataset, _transport(data, host, client_id, client_secret), keep_duplicates)


@import_app.command("images")
def import_images(
    folder: Annotated[Path, typer.Argument(help="Folder of images (searched recursively).")],
    project: ProjectOpt,
    dataset: DatasetOpt = "Default",
    labels_from_folders: Annotated[
        bool,
        typer.Option(
            "--labels-from-folders",
            help="ImageFolder layout: FOLDER/<class>/<image> tags each image "
            "with its class (labels created as needed).",
        ),
    ] = False,
    keep_duplicates: KeepDuplicatesOpt = False,
    data: DataOpt = None,
    host: HostOpt = None,
    client_id: IdOpt = None,
    client_secret: SecretOpt = None,
) -> None:
    """Import a folder of images: one transaction, or nothing."""
    _import(
        "images",
        folder,
        project,
        dataset,
        _transport(data, host, client_id, client_secret),
        keep_duplicates,
        labels_from_folders=labels_from_folders,
    )


@app.command("export")
def export(
    project: str,
    dataset: str,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the export into.")],
    fmt: Annotated[str, typer.Option("--format", help="json, coco, diffgram, yolo or yolo-seg.")] = "json",
    query_text: Annotated[
        str | None, typer.Option("--query", help='Export a slice, e.g. "labels.cat > 0".')
    ] = None,
    as_of: Annotated[int | None, typer.Option("--as-of", help="Export the dataset as of a revision.")] = None,
    images: Annotated[str, typer.Option(help="copy, none, or link (symlinks; local stores).")] = "copy",
    data: DataOpt = None,
    host: HostOpt = None,
    client_id: IdOpt = None,
    client_secret: SecretOpt = None,
) -> None:
    """Export a dataset or a slice of it as a static format, streamed (constant memory)."""
    if images not in ("copy", "none", "link"):
        raise ValueError(f"--images must be copy, none or link, not '{images}'")
    from annostream.fsguard import undone_on_failure

    modes: dict[str, bool | str] = {"copy": True, "none": False, "link": "link"}
    mode = modes[images]
    transport = _transport(data, host, client_id, client_secret)
    remote = not isinstance(transport, EmbeddedTransport)
    with _progress("downloading (bytes)" if remote else "exporting") as bar, undone_on_failure(out_dir):
        task = bar.add_task("export", total=None)
        try:
            manifest = transport.export(
                project,
                dataset,
                fmt,
                out_dir,
                query_text,
                as_of,
                mode,
                lambda n, total: bar.update(task, completed=n, total=total),
            )
        except AnnostreamError as exc:
            _fail(exc)
    out.print(
        f"exported {manifest['files']} files and {manifest['instances']} instances of "
        f"{project}/{dataset} at revision {manifest['revision']} as {fmt} into {out_dir}"
    )


@app.command("ls")
def ls(
    project: Annotated[str | None, typer.Argument(help="List this project's datasets.")] = None,
    data: DataOpt = None,
    host: HostOpt = None,
    client_id: IdOpt = None,
    client_secret: SecretOpt = None,
) -> None:
    """List projects, or the datasets of one project, with counts."""
    transport = _transport(data, host, client_id, client_secret)
    try:
        if project is None:
            table = Table("project", "public", "datasets", "files", "revision")
            for p in transport.list_projects():
                table.add_row(
                    p["string_id"],
                    "yes" if p["is_public"] else "no",
                    str(p["datasets"]),
                    str(p["files"]),
                    str(p["revision"]),
                )
        else:
            table = Table("dataset", "files")
            for d in transport.list_datasets(project, None):
                table.add_row(d["name"], str(d["files"]))
    except AnnostreamError as exc:
        _fail(exc)
    out.print(table)
    if not isinstance(transport, EmbeddedTransport) and not (client_id and client_secret):
        console.print(
            "note: without a key only public projects are listed; private ones may be hidden "
            "(give --client-id and --client-secret)"
        )


@app.command("query")
def query(
    project: str,
    dataset: str,
    text: Annotated[str, typer.Argument(help='e.g. "labels.cat > 2"')],
    count: Annotated[
        bool, typer.Option("--count", metavar=FLAG, help="Print only the number of matches (a flag).")
    ] = False,
    limit: Annotated[int, typer.Option(help="Print at most this many files.")] = 20,
    data: DataOpt = None,
    host: HostOpt = None,
    client_id: IdOpt = None,
    client_secret: SecretOpt = None,
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
    data: Annotated[
        Path, typer.Option("--data", help="The demo's store folder (new, empty, or an earlier demo's).")
    ] = Path("demo-data"),
    items: Annotated[int, typer.Option(help="Number of photographs to build.")] = 240,
    port: Annotated[int, typer.Option(help="The port the printed serve command and snippet use.")] = 8085,
) -> None:
    """Build a store of real photographs, stream it over HTTP, and print how to serve and read it."""
    from annostream.demo import run_demo

    run_demo(data, items, out, port)


@app.command()
def bench(
    project: Annotated[str, typer.Option("--project", help="Project string id.")],
    dataset: Annotated[str, typer.Option("--dataset")] = "Default",
    query: Annotated[str | None, typer.Option(help="Also time this slice's first item and count.")] = None,
    items: Annotated[int, typer.Option(help="Read at most this many items per figure.")] = 2000,
    data: DataOpt = None,
    host: HostOpt = None,
    client_id: IdOpt = None,
    client_secret: SecretOpt = None,
) -> None:
    """Measure streaming from your own server: first batch, query latency, items/s, images/s."""
    import time

    from annostream.client.project import Project
    from annostream.client.sample import decode_image

    data, host = _where(data, host)
    where = f"file://{data.resolve()}" if data is not None else host
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
        n, nbytes = 0, 0
        raw: list[bytes] = []
        for sample in view:
            n += 1
            nbytes += len(sample["image"] or b"")
            if len(raw) < 200 and sample["image"]:
                raw.append(sample["image"])
        seconds = time.perf_counter() - t0
        table.add_row(
            f"streaming rate, {n} items", f"{n / seconds:,.0f} items/s, {nbytes / seconds / 1e6:.1f} MB/s"
        )
        if raw:
            t0 = time.perf_counter()
            for blob in raw:
                decode_image(blob, "numpy")
            table.add_row(
                "decode rate, one core (for comparison)",
                f"{len(raw) / (time.perf_counter() - t0):,.0f} images/s",
            )
    except AnnostreamError as exc:
        _fail(exc)
    out.print(table)


@app.command("gc")
def gc(
    data: Annotated[
        Path,
        typer.Option(
            "--data", help="Local store folder. Default: $ANNOSTREAM_DATA.", envvar="ANNOSTREAM_DATA"
        ),
    ],
    older_than: Annotated[
        str, typer.Option("--older-than", help="A revision (needs --project) or an age: 7d, 12h, 30m.")
    ],
    project: Annotated[str | None, typer.Option("--project", help="Only this project.")] = None,
    keep_tags: Annotated[
        bool,
        typer.Option(
            "--keep-tags/--no-keep-tags",
            help="Keep what tags point at (always: without it gc refuses to run if a tag is older "
            "than the cutoff).",
        ),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", metavar=FLAG, help="Count, delete nothing.")] = False,
    staged_grace: Annotated[
        str,
        typer.Option(
            "--staged-grace",
            help="Collect blobs staged for imports that never committed once older "
            "than this (7d, 12h, 30m, 0s).",
        ),
    ] = "1h",
) -> None:
    """Delete history older than a cutoff (never automatic; never what a tag points at)."""
    from annostream.service.revisions import collect_garbage, parse_older_than
    from annostream.store import Store

    store = Store.open(data, create=False)
    try:
        grace = parse_older_than(staged_grace)
        if isinstance(grace, int):
            raise typer.BadParameter("--staged-grace is an age: 7d, 12h, 30m, 0s")
        report = collect_garbage(
            store,
            parse_older_than(older_than),
            project=project,
            keep_tags=keep_tags,
            dry_run=dry_run,
            staged_grace=grace,
        )
    except AnnostreamError as exc:
        _fail(exc)
    finally:
        store.close()
    verb = "would delete" if dry_run else "deleted"
    rows = sum(report.rows.values())
    cutoffs = ", ".join(f"{p}@{r}" for p, r in report.cutoffs.items()) or "no projects"
    out.print(
        f"gc ({cutoffs}): {verb} {rows} rows, {report.revisions} revisions, "
        f"{report.blobs} blobs ({report.staged} staged for imports that never committed), "
        f"{report.orphans} orphan files"
    )
    for table, n in sorted(report.rows.items()):
        if n:
            out.print(f"  {table}: {n}")


@app.command("fsck")
def fsck(
    data: Annotated[Path, typer.Option("--data", help="Local store folder.", envvar="ANNOSTREAM_DATA")],
    quick: Annotated[bool, typer.Option("--quick", help="Compare blob sizes, do not hash.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check a store: database integrity, every blob present and hashing to its name, orphans.

    Exit code 0 when clean, 1 when anything readable is missing or damaged.
    """
    from sqlalchemy.exc import DatabaseError

    from annostream.service.fsck import check_store
    from annostream.store import Store

    try:
        store = Store.open(data, create=False)
    except DatabaseError as exc:
        console.print(f"[red]fsck {data}: NOT CLEAN[/red]; the database cannot be opened: {exc.orig}")
        raise typer.Exit(1) from exc
    try:
        report = check_store(store, verify_hashes=not quick)
    finally:
        store.close()
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
    else:
        out.print(
            f"fsck {data}: {'clean' if report.clean else 'NOT CLEAN'}; {report.blobs_checked} blobs "
            f"checked, {len(report.missing)} missing, {len(report.damaged)} damaged, "
            f"{len(report.dangling_files)} files without a blob row, {len(report.orphans)} orphan "
            f"blobs, {len(report.temporaries)} temporaries (gc collects orphans and temporaries)"
        )
        for line in report.database:
            out.print(f"  database: {line}")
        for kind in ("missing", "damaged", "dangling_files", "orphans", "temporaries"):
            for name in getattr(report, kind):
                out.print(f"  {kind}: {name}")
    if not report.clean:
        raise typer.Exit(1)


def _guard(*apps: typer.Typer) -> None:
    """Every command of ``apps`` reports user errors in one line (``_one_line_errors``)."""
    for each in apps:
        for info in each.registered_commands:
            if info.callback is not None:
                info.callback = _one_line_errors(info.callback)


_guard(app, project_app, keys_app, import_app)  # last: after every command is defined

if __name__ == "__main__":
    app()
