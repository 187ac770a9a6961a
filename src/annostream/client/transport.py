"""How the SDK reaches a store: over HTTP, or in-process on a local folder.

Both transports offer the same methods and return the same shapes, so every test runs on
both. Neither holds domain logic: the HTTP side speaks the wire API, the embedded side
calls the service layer directly. Connections are opened lazily and again after a fork, so
DataLoader workers never share a socket or a SQLite handle with their parent.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlparse

import httpx
import numpy as np
import orjson
from httpx_retries import Retry, RetryTransport

from annostream import frames
from annostream.errors import TransportError, from_payload
from annostream.schema import AttributeGroupCreate, LabelCreate, ProjectCreate, Role, validate

Item = dict[str, Any]


class Transport(Protocol):
    """The operations the SDK needs, whatever carries them."""

    def project(self, project: str) -> dict[str, Any]: ...
    def list_projects(self) -> list[dict[str, Any]]: ...
    def create_project(self, string_id: str, name: str | None, is_public: bool) -> dict[str, Any]: ...
    def create_key(self, project: str, role: Role) -> dict[str, Any]: ...
    def list_datasets(self, project: str, as_of: int | None) -> list[dict[str, Any]]: ...
    def get_dataset(self, project: str, name: str, as_of: int | None) -> dict[str, Any]: ...
    def create_dataset(self, project: str, name: str) -> dict[str, Any]: ...
    def labels(self, project: str, as_of: int | None) -> list[dict[str, Any]]: ...
    def create_label(self, project: str, name: str, color: str | None) -> dict[str, Any]: ...
    def attribute_groups(self, project: str, as_of: int | None) -> list[dict[str, Any]]: ...
    def create_attribute_group(self, project: str, name: str, kind: str,
                               options: list[str]) -> dict[str, Any]: ...
    def ids(self, project: str, dataset: str, query: str | None,
            as_of: int | None) -> tuple[np.ndarray, int]: ...
    def count(self, project: str, dataset: str, query: str | None, as_of: int | None) -> tuple[int, int]: ...
    def items(self, project: str, ids: list[int], as_of: int | None,
              blobs: bool) -> list[tuple[Item, bytes | None]]: ...
    def blob(self, project: str, sha256: str) -> bytes: ...
    def upload_file(self, project: str, dataset: str, filename: str, data: bytes,
                    instances: list[dict[str, Any]], metadata: dict[str, Any]) -> dict[str, Any]: ...
    def write_instances(self, project: str, file_id: int, instances: list[dict[str, Any]],
                        replace: bool) -> dict[str, Any]: ...
    def delete_instance(self, project: str, instance_id: int) -> dict[str, Any]: ...
    def import_coco(self, project: str, dataset: str, coco: dict[str, Any],
                    images_dir: Path, progress: Any = None) -> dict[str, Any]: ...

    def export(self, project: str, dataset: str, fmt: str, out: Path, query: str | None,
               as_of: int | None, images: bool | str, progress: Any = None) -> dict[str, Any]: ...
    def import_source(self, project: str, dataset: str, source: Any, fmt: str,
                      progress: Any = None) -> dict[str, Any]: ...
    def create_tag(self, project: str, name: str, rev: int | None) -> dict[str, Any]: ...
    def list_tags(self, project: str) -> list[dict[str, Any]]: ...
    def get_tag(self, project: str, name: str) -> dict[str, Any]: ...
    def delete_tag(self, project: str, name: str) -> dict[str, Any]: ...
    def changes(self, project: str, since: int, wait: float, dataset: str | None,
                query: str | None, limit: int) -> dict[str, Any]: ...
    def remove_file(self, project: str, dataset: str, file_id: int) -> dict[str, Any]: ...


# --- HTTP ------------------------------------------------------------------------------

class HttpTransport:
    """The wire API over one keep-alive connection pool per process (httpx)."""

    def __init__(self, host: str, client_id: str | None = None, client_secret: str | None = None,
                 *, timeout: float = 60.0, retries: int = 5, pool_size: int = 16) -> None:
        self.host = host.rstrip("/")
        self._auth = (client_id, client_secret) if client_id and client_secret else None
        self._timeout = timeout
        self._retries = retries
        self._pool_size = pool_size
        self._client: httpx.Client | None = None
        self._pid = -1
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_client=None, _pid=-1, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        """The pool for this process, created on first use (and anew in a forked child)."""
        if self._client is None or self._pid != os.getpid():
            with self._lock:
                if self._client is None or self._pid != os.getpid():
                    retry = Retry(total=self._retries, backoff_factor=0.2, max_backoff_wait=5.0,
                                  allowed_methods=["GET", "POST", "PUT", "DELETE", "HEAD"])
                    limits = httpx.Limits(max_connections=self._pool_size,
                                          max_keepalive_connections=self._pool_size)
                    self._client = httpx.Client(
                        base_url=self.host, auth=self._auth, timeout=self._timeout,
                        transport=RetryTransport(transport=httpx.HTTPTransport(limits=limits), retry=retry),
                    )
                    self._pid = os.getpid()
        return self._client

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise TransportError(
                f"cannot reach annostream server at {self.host} after {self._retries} retries: {exc}",
                {"host": self.host},
            ) from exc
        if response.status_code >= 400:
            try:
                payload = response.json()
            except ValueError:
                payload = response.text
            raise from_payload(response.status_code, payload)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return orjson.loads(self._request(method, path, **kwargs).content)

    @staticmethod
    def _p(project: str, rest: str = "") -> str:
        return f"/api/v2/projects/{quote(project, safe='')}{rest}"

    @staticmethod
    def _d(dataset: str) -> str:
        return f"/datasets/{quote(dataset, safe='')}"

    @staticmethod
    def _params(**kwargs: Any) -> dict[str, Any]:
        return {k: v for k, v in kwargs.items() if v is not None}

    def project(self, project: str) -> dict[str, Any]:
        return self._json("GET", self._p(project))

    def list_projects(self) -> list[dict[str, Any]]:
        return self._json("GET", "/api/v2/projects")

    def create_project(self, string_id: str, name: str | None, is_public: bool) -> dict[str, Any]:
        body = {"string_id": string_id, "name": name, "is_public": is_public}
        return self._json("POST", "/api/v2/projects", json=body)

    def create_key(self, project: str, role: Role) -> dict[str, Any]:
        return self._json("POST", self._p(project, "/keys"), json={"role": role})

    def list_datasets(self, project: str, as_of: int | None) -> list[dict[str, Any]]:
        return self._json("GET", self._p(project, "/datasets"), params=self._params(as_of=as_of))

    def get_dataset(self, project: str, name: str, as_of: int | None) -> dict[str, Any]:
        return self._json("GET", self._p(project, self._d(name)), params=self._params(as_of=as_of))

    def create_dataset(self, project: str, name: str) -> dict[str, Any]:
        return self._json("POST", self._p(project, "/datasets"), json={"name": name})

    def labels(self, project: str, as_of: int | None) -> list[dict[str, Any]]:
        return self._json("GET", self._p(project, "/labels"), params=self._params(as_of=as_of))

    def create_label(self, project: str, name: str, color: str | None) -> dict[str, Any]:
        return self._json("POST", self._p(project, "/labels"), json={"name": name, "color": color})

    def attribute_groups(self, project: str, as_of: int | None) -> list[dict[str, Any]]:
        return self._json("GET", self._p(project, "/attribute_groups"), params=self._params(as_of=as_of))

    def create_attribute_group(self, project: str, name: str, kind: str,
                               options: list[str]) -> dict[str, Any]:
        body = {"name": name, "kind": kind, "options": options}
        return self._json("POST", self._p(project, "/attribute_groups"), json=body)

    def ids(self, project: str, dataset: str, query: str | None,
            as_of: int | None) -> tuple[np.ndarray, int]:
        response = self._request("GET", self._p(project, self._d(dataset) + "/ids"),
                                 params=self._params(query=query, as_of=as_of))
        return np.frombuffer(response.content, dtype="<i8").astype(np.int64), int(response.headers["X-Revision"])

    def count(self, project: str, dataset: str, query: str | None, as_of: int | None) -> tuple[int, int]:
        body = self._json("GET", self._p(project, self._d(dataset) + "/count"),
                          params=self._params(query=query, as_of=as_of))
        return body["count"], body["revision"]

    def items(self, project: str, ids: list[int], as_of: int | None,
              blobs: bool) -> list[tuple[Item, bytes | None]]:
        body = {"ids": ids, "as_of": as_of, "blobs": "inline" if blobs else "none"}
        response = self._request("POST", self._p(project, "/items:batch"), content=orjson.dumps(body),
                                 headers={"Content-Type": "application/json"})
        if blobs:
            return list(frames.decode(response.content))
        return [(item, None) for item in orjson.loads(response.content)["items"]]

    def blob(self, project: str, sha256: str) -> bytes:
        """Blob bytes; a redirect (presigned object-store URL) is followed without our key."""
        response = self._request("GET", self._p(project, f"/blobs/{sha256}"))
        if response.is_redirect and "location" in response.headers:
            response = self._request("GET", response.headers["location"], auth=None)
        return response.content

    def upload_file(self, project: str, dataset: str, filename: str, data: bytes,
                    instances: list[dict[str, Any]], metadata: dict[str, Any]) -> dict[str, Any]:
        form = {"instances": orjson.dumps(instances).decode(), "metadata": orjson.dumps(metadata).decode()}
        return self._json("POST", self._p(project, self._d(dataset) + "/files"),
                          files={"file": (filename, data)}, data=form)

    def write_instances(self, project: str, file_id: int, instances: list[dict[str, Any]],
                        replace: bool) -> dict[str, Any]:
        return self._json("PUT" if replace else "POST", self._p(project, f"/files/{file_id}/instances"),
                          json={"instances": instances})

    def delete_instance(self, project: str, instance_id: int) -> dict[str, Any]:
        return self._json("DELETE", self._p(project, f"/instances/{instance_id}"))

    def import_coco(self, project: str, dataset: str, coco: dict[str, Any],
                    images_dir: Path, progress: Any = None) -> dict[str, Any]:
        """Stage every image as a blob, then post the COCO file naming them by sha256."""
        images = []
        total = len(coco.get("images", []))
        for n, image in enumerate(coco.get("images", []), 1):
            staged = dict(image)
            path = Path(images_dir) / str(image.get("file_name", ""))
            if path.is_file():
                staged["sha256"] = self._json("PUT", self._p(project, "/blobs"),
                                              content=path.read_bytes())["sha256"]
            images.append(staged)
            if progress:
                progress(n, total)
        body = {**coco, "images": images}
        return self._json("POST", self._p(project, self._d(dataset) + "/import"),
                          params={"format": "coco"}, content=orjson.dumps(body),
                          headers={"Content-Type": "application/json"})


    def export(self, project: str, dataset: str, fmt: str, out: Path, query: str | None,
               as_of: int | None, images: bool | str, progress: Any = None) -> dict[str, Any]:
        """Stream the export route's zip to a temporary file in ``out``, then unpack it there.

        ``progress(bytes_received, None)``: the zip is made on the fly, its size is unknown.
        """
        import tempfile
        import zipfile

        from annostream.service.export import MANIFEST

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        params = self._params(format=fmt, query=query, as_of=as_of, images=str(bool(images)).lower())
        with tempfile.TemporaryFile(dir=out) as spool:
            try:
                with self.client.stream("GET", self._p(project, self._d(dataset) + "/export"),
                                        params=params, timeout=None) as response:
                    if response.status_code >= 400:
                        response.read()
                        try:
                            payload = response.json()
                        except ValueError:
                            payload = response.text
                        raise from_payload(response.status_code, payload)
                    received = 0
                    for chunk in response.iter_bytes(1 << 20):
                        spool.write(chunk)
                        received += len(chunk)
                        if progress:
                            progress(received, None)
            except httpx.TransportError as exc:
                raise TransportError(f"export from {self.host} broke off: {exc}", {"host": self.host}) from exc
            spool.seek(0)
            with zipfile.ZipFile(spool) as archive:
                archive.extractall(out)
        return orjson.loads((out / MANIFEST).read_bytes())

    def import_source(self, project: str, dataset: str, source: Any, fmt: str,
                      progress: Any = None) -> dict[str, Any]:
        """Read every record first (so bad input fails before anything is sent), then stage
        each image as a blob and post the records as NDJSON: the server commits once."""
        import tempfile

        with tempfile.TemporaryFile() as parsed, tempfile.TemporaryFile() as body:
            total = 0
            for record in source.records:
                parsed.write(orjson.dumps(record) + b"\n")
                total += 1
            head = {"labels": source.labels, "attribute_groups": source.attribute_groups, "total": total}
            body.write(orjson.dumps(head) + b"\n")
            parsed.seek(0)
            for n, line in enumerate(parsed, 1):
                record = orjson.loads(line)
                if record.get("image_path"):
                    data = Path(record["image_path"]).read_bytes()
                    record["sha256"] = self._json("PUT", self._p(project, "/blobs"), content=data)["sha256"]
                record["image_path"] = None
                body.write(orjson.dumps(record) + b"\n")
                if progress:
                    progress(n, total)
            body.seek(0)
            return self._json("POST", self._p(project, self._d(dataset) + "/import:records"),
                              params={"format": fmt}, content=iter(lambda: body.read(1 << 20), b""),
                              headers={"Content-Type": "application/x-ndjson"})

    def create_tag(self, project: str, name: str, rev: int | None) -> dict[str, Any]:
        return self._json("POST", self._p(project, "/tags"), json={"name": name, "rev": rev})

    def list_tags(self, project: str) -> list[dict[str, Any]]:
        return self._json("GET", self._p(project, "/tags"))

    def get_tag(self, project: str, name: str) -> dict[str, Any]:
        return self._json("GET", self._p(project, f"/tags/{quote(name, safe='')}"))

    def delete_tag(self, project: str, name: str) -> dict[str, Any]:
        return self._json("DELETE", self._p(project, f"/tags/{quote(name, safe='')}"))

    def changes(self, project: str, since: int, wait: float, dataset: str | None,
                query: str | None, limit: int) -> dict[str, Any]:
        """One page of the change feed; the read timeout allows for the long poll."""
        params = self._params(since=since, wait=wait, dataset=dataset, query=query, limit=limit)
        return self._json("GET", self._p(project, "/changes"), params=params,
                          timeout=httpx.Timeout(self._timeout + wait))

    def remove_file(self, project: str, dataset: str, file_id: int) -> dict[str, Any]:
        return self._json("DELETE", self._p(project, self._d(dataset) + f"/files/{file_id}"))


# --- embedded --------------------------------------------------------------------------

_STORES: dict[tuple[int, str], Any] = {}
_STORES_LOCK = threading.Lock()


def _open_store(path: str, create: bool = False) -> Any:
    """One Store per (process, folder), shared by every Project that opens that folder.

    A folder that holds no store is an error naming the nearest one below it, unless
    ``create`` (an explicit ``project create`` or ``init``).
    """
    from annostream.store import Store

    key = (os.getpid(), path)
    with _STORES_LOCK:
        if key not in _STORES:
            _STORES[key] = Store.open(path, create=create)
        return _STORES[key]


def close_store(path: str | os.PathLike[str]) -> None:
    """Close this process's shared Store on ``path`` (before its files are removed)."""
    key = (os.getpid(), str(Path(path).resolve()))
    with _STORES_LOCK:
        store = _STORES.pop(key, None)
    if store is not None:
        store.close()


class EmbeddedTransport:
    """The service layer in this process, on a local folder: no server, same API.

    The caller owns the folder, so it acts with full rights (the ``local`` principal).
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = False) -> None:
        self.path = str(Path(path).resolve())
        self.shown_path = str(path)
        self.create = create

    def _store(self, create: bool) -> Any:
        from annostream.errors import NotFound
        from annostream.store import no_store_message

        try:
            return _open_store(self.path, create or self.create)
        except NotFound as exc:
            raise NotFound(no_store_message(Path(self.shown_path)), exc.detail) from None

    @property
    def store(self) -> Any:
        return self._store(False)

    def _ref(self, project: str, need: Role = "viewer") -> Any:
        from annostream.service.projects import LOCAL, authorize

        return authorize(self.store, LOCAL, project, need)

    def _ds(self, project: str, dataset: str, as_of: int | None = None) -> Any:
        from annostream.service.datasets import get_dataset

        return get_dataset(self.store, self._ref(project), dataset, as_of)

    def project(self, project: str) -> dict[str, Any]:
        from annostream.service.labels import current_revision

        ref = self._ref(project)
        return {"string_id": ref.string_id, "name": ref.name, "is_public": ref.is_public,
                "role": ref.role, "revision": current_revision(self.store, ref)}

    def list_projects(self) -> list[dict[str, Any]]:
        from annostream.service.projects import LOCAL, list_projects

        return list_projects(self.store, LOCAL)

    def create_project(self, string_id: str, name: str | None, is_public: bool) -> dict[str, Any]:
        from annostream.service.projects import LOCAL, create_project

        spec = validate(ProjectCreate, {"string_id": string_id, "name": name, "is_public": is_public})
        return create_project(self._store(True), LOCAL, spec)

    def create_key(self, project: str, role: Role) -> dict[str, Any]:
        from annostream.service.projects import LOCAL, create_key

        return create_key(self.store, LOCAL, project, role)

    def list_datasets(self, project: str, as_of: int | None) -> list[dict[str, Any]]:
        from annostream.service.datasets import list_datasets

        return list_datasets(self.store, self._ref(project), as_of)

    def get_dataset(self, project: str, name: str, as_of: int | None) -> dict[str, Any]:
        from annostream.service.datasets import slice_count

        ds = self._ds(project, name, as_of)
        count, rev = slice_count(self.store, ds, None, as_of)
        return {"id": ds.id, "name": ds.name, "files": count, "revision": rev}

    def create_dataset(self, project: str, name: str) -> dict[str, Any]:
        from annostream.service.datasets import create_dataset

        return create_dataset(self.store, self._ref(project, "editor"), name)

    def labels(self, project: str, as_of: int | None) -> list[dict[str, Any]]:
        from annostream.service.labels import list_labels

        return list_labels(self.store, self._ref(project), as_of)

    def create_label(self, project: str, name: str, color: str | None) -> dict[str, Any]:
        from annostream.service.labels import create_label

        spec = validate(LabelCreate, {"name": name, "color": color})
        return create_label(self.store, self._ref(project, "editor"), spec)

    def attribute_groups(self, project: str, as_of: int | None) -> list[dict[str, Any]]:
        from annostream.service.labels import list_attribute_groups

        return list_attribute_groups(self.store, self._ref(project), as_of)

    def create_attribute_group(self, project: str, name: str, kind: str,
                               options: list[str]) -> dict[str, Any]:
        from annostream.service.labels import create_attribute_group

        spec = validate(AttributeGroupCreate, {"name": name, "kind": kind, "options": options})
        return create_attribute_group(self.store, self._ref(project, "editor"), spec)

    def ids(self, project: str, dataset: str, query: str | None,
            as_of: int | None) -> tuple[np.ndarray, int]:
        from annostream.service.datasets import slice_ids

        return slice_ids(self.store, self._ds(project, dataset, as_of), query, as_of)

    def count(self, project: str, dataset: str, query: str | None, as_of: int | None) -> tuple[int, int]:
        from annostream.service.datasets import slice_count

        return slice_count(self.store, self._ds(project, dataset, as_of), query, as_of)

    def items(self, project: str, ids: list[int], as_of: int | None,
              blobs: bool) -> list[tuple[Item, bytes | None]]:
        from annostream.service.items import read_items

        found, _ = read_items(self.store, self._ref(project), ids, as_of)
        if not blobs:
            return [(item, None) for item in found]
        from annostream.store.blobs import get_many

        fetched = get_many(self.store.blobs, [i["file"]["sha256"] for i in found if i["file"]["sha256"]])
        return [(item, next(fetched) if item["file"]["sha256"] else None) for item in found]

    def blob(self, project: str, sha256: str) -> bytes:
        from annostream.service.items import read_blob

        return read_blob(self.store, self._ref(project), sha256)

    def upload_file(self, project: str, dataset: str, filename: str, data: bytes,
                    instances: list[dict[str, Any]], metadata: dict[str, Any]) -> dict[str, Any]:
        from annostream.service.ingest import add_file

        return add_file(self.store, self._ref(project, "editor"), dataset, filename, data,
                        instances, metadata)

    def write_instances(self, project: str, file_id: int, instances: list[dict[str, Any]],
                        replace: bool) -> dict[str, Any]:
        from annostream.service.ingest import write_instances

        return write_instances(self.store, self._ref(project, "editor"), file_id, instances,
                               replace=replace)

    def delete_instance(self, project: str, instance_id: int) -> dict[str, Any]:
        from annostream.service.ingest import delete_instance

        return delete_instance(self.store, self._ref(project, "editor"), instance_id)

    def import_coco(self, project: str, dataset: str, coco: dict[str, Any],
                    images_dir: Path, progress: Any = None) -> dict[str, Any]:
        from annostream.service.ingest import import_coco

        def read_image(image: dict[str, Any]) -> bytes:
            return (Path(images_dir) / str(image["file_name"])).read_bytes()

        return import_coco(self.store, self._ref(project, "editor"), dataset, coco, read_image, progress)


    def export(self, project: str, dataset: str, fmt: str, out: Path, query: str | None,
               as_of: int | None, images: bool | str, progress: Any = None) -> dict[str, Any]:
        """Write the export straight into the folder ``out`` (``images="link"`` symlinks blobs)."""
        from annostream.formats import DirSink
        from annostream.service.export import export_slice

        return export_slice(self.store, self._ds(project, dataset, as_of), fmt, DirSink(out),
                            query=query, as_of=as_of, images=images, progress=progress)

    def import_source(self, project: str, dataset: str, source: Any, fmt: str,
                      progress: Any = None) -> dict[str, Any]:
        from annostream.service.export import import_source, local_reader

        return import_source(self.store, self._ref(project, "editor"), dataset, source,
                             local_reader(self.store), progress, fmt)

    def create_tag(self, project: str, name: str, rev: int | None) -> dict[str, Any]:
        from annostream.service.revisions import create_tag

        return create_tag(self.store, self._ref(project, "editor"), name, rev)

    def list_tags(self, project: str) -> list[dict[str, Any]]:
        from annostream.service.revisions import list_tags

        return list_tags(self.store, self._ref(project))

    def get_tag(self, project: str, name: str) -> dict[str, Any]:
        from annostream.service.revisions import get_tag

        return get_tag(self.store, self._ref(project), name)

    def delete_tag(self, project: str, name: str) -> dict[str, Any]:
        from annostream.service.revisions import delete_tag

        return delete_tag(self.store, self._ref(project, "admin"), name)

    def changes(self, project: str, since: int, wait: float, dataset: str | None,
                query: str | None, limit: int) -> dict[str, Any]:
        from annostream.service.changes import wait_for_changes

        return wait_for_changes(self.store, self._ref(project), since, wait, dataset=dataset,
                                query=query, limit=limit)

    def remove_file(self, project: str, dataset: str, file_id: int) -> dict[str, Any]:
        from annostream.service.ingest import remove_file

        ref = self._ref(project, "editor")
        return remove_file(self.store, ref, self._ds(project, dataset).id, file_id)


# host:port, or localhost / an IPv4 address alone: a server, whatever path follows.
_SERVER_WITHOUT_SCHEME = re.compile(r"^([\w.\-]+:\d+|localhost|\d+\.\d+\.\d+\.\d+)(/.*)?$")


def connect(host: str | None = None, client_id: str | None = None,
            client_secret: str | None = None) -> Transport:
    """A transport for ``host``: ``http(s)://`` for a server, ``file://`` for a local folder.

    A host without a scheme (``127.0.0.1:8085``, ``localhost``) is a server over ``http://``;
    something that looks like a path is refused with the ``file://`` spelling, never opened
    as a folder.
    """
    host = host or os.environ.get("ANNOSTREAM_HOST") or "http://127.0.0.1:8085"
    if "://" not in host:
        if not _SERVER_WITHOUT_SCHEME.match(host):
            raise ValueError(f"host '{host}' has no scheme: write 'http://{host}' for a server, "
                             f"or 'file://{host}' for a local store folder")
        host = f"http://{host}"
    parsed = urlparse(host)
    if parsed.scheme in ("http", "https"):
        return HttpTransport(host, client_id, client_secret)
    if parsed.scheme == "file":
        # file:///abs/path, or file://rel/path (a relative folder, as people type it)
        relative = parsed.netloc not in ("", "localhost")
        return EmbeddedTransport(parsed.netloc + parsed.path if relative else parsed.path)
    raise ValueError(f"unsupported host '{host}': use http(s)://... or file:///path")
