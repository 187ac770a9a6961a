"""The SDK's entry point: a project on a server or in a local folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from annostream.client.cache import ByteLRU, DiskBlobCache
from annostream.client.dataset import Dataset, LabelMap
from annostream.client.retry import Retry
from annostream.client.transports import Transport, connect
from annostream.client.uploads import run_import

DEFAULT_CACHE_BYTES = 256 * 1024 * 1024
DEFAULT_DISK_CACHE_BYTES = 20 * 1024**3


class Directory:
    """Diffgram's name for datasets: ``project.directory.get(name=...)`` and ``.list()``."""

    def __init__(self, project: Project) -> None:
        self._project = project

    def get(self, name: str = "Default", **options: Any) -> Dataset:
        return self._project.dataset(name, **options)

    def list(self) -> list[dict[str, Any]]:
        """Datasets of the project: id, name, number of files."""
        return self._project.transport.list_datasets(self._project.string_id, None)


class Project:
    """A project, reached over HTTP (``host="http://..."``) or embedded (``file:///path``).

    ``host`` defaults to ``$ANNOSTREAM_HOST``, else ``http://127.0.0.1:8085``; a host without
    a scheme (``127.0.0.1:8085``) is a server over ``http://``, and a folder is always written
    ``file://...`` (one that holds no store is an error naming the nearest store below it).
    Credentials are an API key's client id and
    secret; a public project can be read without them. ``cache_bytes`` bounds the in-memory
    cache of random-access reads; ``disk_cache`` names a folder where blobs are kept across
    epochs and processes (at most ``disk_cache_bytes``), so later epochs fetch only metadata.
    ``retry`` (a ``Retry``) bounds how long each request to a server is tried again after a
    dropped connection, a cut-off or damaged body, or a 429/502/503/504: by default a
    minute, enough to ride out a server restart; a server never reached fails in 2 s.
    """

    def __init__(
        self,
        project_string_id: str,
        client_id: str | None = None,
        client_secret: str | None = None,
        host: str | None = None,
        *,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        transport: Transport | None = None,
        disk_cache: str | os.PathLike[str] | None = None,
        disk_cache_bytes: int = DEFAULT_DISK_CACHE_BYTES,
        retry: Retry | None = None,
    ) -> None:
        self.string_id = project_string_id
        self.host = host or os.environ.get("ANNOSTREAM_HOST")
        if transport is not None and retry is not None:
            raise TypeError(
                "retry= configures the transport Project makes; give it to your transport instead"
            )
        self.transport = transport or connect(self.host, client_id, client_secret, retry)
        self.cache = ByteLRU(cache_bytes)
        self.disk_cache = DiskBlobCache(disk_cache, disk_cache_bytes) if disk_cache else None
        self.directory = Directory(self)
        self.info = self.transport.project(project_string_id)

    def __repr__(self) -> str:
        return f"<Project {self.string_id} at {self.host}>"

    def dataset(self, name: str = "Default", **options: Any) -> Dataset:
        """A lazy view of the dataset called ``name`` (404 if there is none)."""
        # Its first item's metadata says it exists; its description would count every file
        # (seconds at a million files, before the first batch).
        self.transport.page(self.string_id, name, None, None, None, 1, False)
        return Dataset(self, name, **options)

    def explore(self) -> str:
        """The explorer page of this project on its server; printed, and returned."""
        from urllib.parse import quote

        from annostream.client.dataset import explorer_base

        url = f"{explorer_base(self)}/p/{quote(self.string_id, safe='')}/"
        print(url)
        return url

    @property
    def revision(self) -> int:
        return int(self.transport.project(self.string_id)["revision"])

    @property
    def labels(self) -> LabelMap:
        return LabelMap(self.transport.labels(self.string_id, None))

    # --- writes ------------------------------------------------------------------------

    def create_dataset(self, name: str) -> Dataset:
        self.transport.create_dataset(self.string_id, name)
        return Dataset(self, name)

    def create_label(self, name: str, color: str | None = None) -> dict[str, Any]:
        return self.transport.create_label(self.string_id, name, color)

    def create_attribute_group(
        self, name: str, kind: str = "select", options: list[str] | None = None
    ) -> dict[str, Any]:
        return self.transport.create_attribute_group(self.string_id, name, kind, options or [])

    def upload(
        self,
        dataset: str,
        path: str | os.PathLike[str] | None = None,
        *,
        data: bytes | None = None,
        filename: str | None = None,
        instances: list[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Upload one image (or UTF-8 text) with its instances into ``dataset``: one commit."""
        if data is None:
            if path is None:
                raise ValueError("give a path or data")
            data = Path(path).read_bytes()
        name = filename or (Path(path).name if path is not None else "upload")
        return self.transport.upload_file(
            self.string_id, dataset, name, data, instances or [], metadata or {}
        )

    def write_instances(
        self, file_id: int, instances: list[dict[str, Any]], *, replace: bool = False
    ) -> dict[str, Any]:
        return self.transport.write_instances(self.string_id, file_id, instances, replace)

    def delete_instance(self, instance_id: int) -> dict[str, Any]:
        return self.transport.delete_instance(self.string_id, instance_id)

    def import_coco(
        self,
        annotations: str | os.PathLike[str] | dict[str, Any],
        images_dir: str | os.PathLike[str],
        dataset: str = "Default",
        progress: Any = None,
        *,
        shapes: str = "auto",
        duplicates: str = "skip",
    ) -> dict[str, Any]:
        """Import a COCO file and its images into ``dataset`` as one commit (or nothing).

        ``shapes``: ``auto`` (polygons where a segmentation has them, keypoints, else boxes),
        ``box`` (one box per annotation from its ``bbox``), ``polygon``. Images are read only
        inside ``images_dir``. Files already in the dataset with the same name and bytes are
        skipped (``duplicates="keep"`` adds them again).
        """
        from annostream.formats.coco import read_coco

        source = read_coco(
            annotations if isinstance(annotations, dict) else Path(annotations), Path(images_dir), shapes
        )
        return run_import(self.transport, self.string_id, dataset, source, "coco", progress, duplicates)

    def import_format(
        self,
        format: str,  # noqa: A002
        path: str | os.PathLike[str],
        dataset: str = "Default",
        progress: Any = None,
        *,
        duplicates: str = "skip",
        **options: Any,
    ) -> dict[str, Any]:
        """Import a static export into ``dataset`` as one commit (or nothing).

        ``format``: coco (``images=``, ``shapes=``), json (an annostream JSON export folder
        or its export.json; a Diffgram JSON file is recognised by its keys), diffgram, yolo
        (a folder with data.yaml), images (a folder; ``labels_from_folders=True``).
        The first bad record is named in the error, with its file and line.
        """
        from annostream.formats import read_source

        source = read_source(format, path, **options)
        return run_import(self.transport, self.string_id, dataset, source, format, progress, duplicates)

    def import_images(
        self,
        folder: str | os.PathLike[str],
        dataset: str = "Default",
        *,
        labels_from_folders: bool = False,
        progress: Any = None,
        duplicates: str = "skip",
    ) -> dict[str, Any]:
        """Every image below ``folder`` into ``dataset`` in one commit; with
        ``labels_from_folders`` an ImageFolder tree (``folder/<class>/<image>``) gives each
        image its class as a tag, the labels created as needed."""
        return self.import_format(
            "images",
            folder,
            dataset,
            progress,
            duplicates=duplicates,
            labels_from_folders=labels_from_folders,
        )

    # --- revisions -----------------------------------------------------------------------

    def tag(self, name: str, rev: int | None = None) -> dict[str, Any]:
        """Name revision ``rev`` (the head when None) so that ``ds.as_of(name)`` reads it.

        Tags never move: naming another revision with a taken name is a Conflict.
        """
        return self.transport.create_tag(self.string_id, name, rev)

    def tags(self) -> list[dict[str, Any]]:
        """The project's tags (name, rev, created_at), oldest revision first."""
        return self.transport.list_tags(self.string_id)

    def delete_tag(self, name: str) -> dict[str, Any]:
        return self.transport.delete_tag(self.string_id, name)

    def remove_file(self, dataset: str, file_id: int) -> dict[str, Any]:
        """Take a file out of ``dataset`` (one commit; the file and its history stay)."""
        return self.transport.remove_file(self.string_id, dataset, file_id)

    def resolve_revision(self, revision: int | str) -> int:
        """A revision number from a number or a tag name."""
        if isinstance(revision, int):
            return revision
        if revision.isdigit():
            return int(revision)
        return int(self.transport.get_tag(self.string_id, revision)["rev"])


def open(path: str | os.PathLike[str], project: str | None = None, **options: Any) -> Project:  # noqa: A001
    """Open a project in a local store folder, with no server (embedded mode).

    With one project in the folder, ``project`` may be left out.
    """
    from annostream.client.transports import EmbeddedTransport

    transport = EmbeddedTransport(path)
    if project is None:
        names = [p["string_id"] for p in transport.list_projects()]
        if len(names) != 1:
            raise ValueError(f"name the project to open; the store at {path} holds {names}")
        project = names[0]
    return Project(project, host=f"file://{Path(path).resolve()}", transport=transport, **options)
