"""The wire API over HTTP (httpx), every call made from its declaration.

One keep-alive pool per process, opened lazily and again after a fork, so DataLoader
workers never share a socket with their parent; bounded retries with backoff on connection
errors. Or an injected ``httpx.Client`` (``client=``): for instance
``fastapi.testclient.TestClient(app)``, which carries the same calls to an ASGI app in this
process; an injected client is used as given (its own base URL, timeouts and retries) and
belongs to the process that made it.

Invariant: this module imports neither the service layer nor SQLAlchemy (tested).
"""

from __future__ import annotations

import os
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import orjson
from httpx_retries import Retry, RetryTransport
from pydantic import BaseModel

from annostream import frames
from annostream.client.transports.base import Transport
from annostream.errors import TransportError, from_payload
from annostream.operations import API_PREFIX, EXPORT_MANIFEST, OPERATIONS, Op


def _query_value(value: Any) -> Any:
    return str(value).lower() if isinstance(value, bool) else value


def _raise_for(response: httpx.Response) -> None:
    if response.status_code >= 400:
        try:
            payload = response.json()
        except ValueError:
            payload = response.text
        raise from_payload(response.status_code, payload)


class HttpTransport(Transport):
    """A server's ``/api/v2`` reached with httpx, with an API key when one is given."""

    def __init__(self, host: str, client_id: str | None = None, client_secret: str | None = None,
                 *, timeout: float = 60.0, retries: int = 5, pool_size: int = 16,
                 client: httpx.Client | None = None) -> None:
        self.host = host.rstrip("/")
        self._auth = (client_id, client_secret) if client_id and client_secret else None
        self._timeout = timeout
        self._retries = retries
        self._pool_size = pool_size
        self._injected = client
        self._client: httpx.Client | None = None
        self._pid = -1
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_client=None, _pid=-1, _lock=None, _injected=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        """The injected client, else the pool for this process (made anew in a forked child)."""
        if self._injected is not None:
            return self._injected
        if self._client is None or self._pid != os.getpid():
            with self._lock:
                if self._client is None or self._pid != os.getpid():
                    retry = Retry(total=self._retries, backoff_factor=0.2, max_backoff_wait=5.0,
                                  allowed_methods=["GET", "POST", "PUT", "DELETE", "HEAD"])
                    limits = httpx.Limits(max_connections=self._pool_size,
                                          max_keepalive_connections=self._pool_size)
                    self._client = httpx.Client(
                        base_url=self.host, timeout=self._timeout,
                        transport=RetryTransport(transport=httpx.HTTPTransport(limits=limits), retry=retry),
                    )
                    self._pid = os.getpid()
        return self._client

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("auth", self._auth or httpx.USE_CLIENT_DEFAULT)
        try:
            response = self.client.request(method, path, follow_redirects=False, **kwargs)
        except httpx.TransportError as exc:
            raise TransportError(
                f"cannot reach annostream server at {self.host} after {self._retries} retries: {exc}",
                {"host": self.host},
            ) from exc
        _raise_for(response)
        return response

    # --- the declared operations -------------------------------------------------------------

    @staticmethod
    def path(op: Op, args: dict[str, Any]) -> str:
        """``op``'s URL path with its path parameters filled in, each quoted as one segment."""
        return API_PREFIX + op.path.format(**{p: quote(str(args[p]), safe="") for p in op.path_params})

    @staticmethod
    def _body(op: Op, body: Any) -> dict[str, Any]:
        """httpx keyword arguments carrying ``body`` as ``op`` declares it."""
        if op.body == "none":
            return {}
        if op.body in ("json", "any_json"):
            data = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
            return {"content": orjson.dumps(data), "headers": {"Content-Type": "application/json"}}
        if op.body == "multipart":
            form = {k: orjson.dumps(body.get(k) or default).decode()
                    for k, default in (("instances", []), ("metadata", {}))}
            return {"files": {"file": (body.get("filename") or "upload", body["data"])}, "data": form}
        media = "application/x-ndjson" if op.body == "ndjson" else "application/octet-stream"
        return {"content": body, "headers": {"Content-Type": media}}

    def call(self, name: str, /, **args: Any) -> Any:
        op = OPERATIONS[name]
        params = {k: _query_value(args[k]) for k in op.query_params if args.get(k) is not None}
        kwargs = self._body(op, args.get("body"))
        if "wait" in op.params and self._injected is None:  # a long poll: the read timeout allows for it
            kwargs["timeout"] = httpx.Timeout(self._timeout + float(args.get("wait") or 0))
        response = self._request(op.method, self.path(op, args), params=params, **kwargs)
        return self._decode(op, response)

    def _decode(self, op: Op, response: httpx.Response) -> Any:
        """What ``call`` returns for ``response``, by the declared reply kind."""
        if op.reply == "json":
            return orjson.loads(response.content)
        if op.reply == "ids":
            ids = np.frombuffer(response.content, dtype="<i8").astype(np.int64)
            return ids, int(response.headers["X-Revision"])
        if op.reply == "items":
            rev = int(response.headers["X-Revision"])
            if response.headers.get("content-type", "").startswith(frames.MEDIA_TYPE):
                return list(frames.decode(response.content)), rev
            return [(item, None) for item in orjson.loads(response.content)["items"]], rev
        if op.reply == "blob" and response.is_redirect and "location" in response.headers:
            # A presigned object-store URL: fetched without our key, and not through an
            # injected client (which may reach only the app it was made for).
            location = response.headers["location"]
            try:
                if self._injected is None:
                    followed = self.client.request("GET", location, auth=None)
                else:
                    followed = httpx.get(location, timeout=self._timeout)
            except httpx.TransportError as exc:
                raise TransportError(f"cannot fetch blob from {location}: {exc}", {"host": location}) from exc
            _raise_for(followed)
            return followed.content
        return response.content

    # --- transfers -------------------------------------------------------------------------

    def export(self, project: str, dataset: str, fmt: str, out: Path, query: str | None,
               as_of: int | None, images: bool | str, progress: Any = None) -> dict[str, Any]:
        """Stream the export's zip to a temporary file in ``out``, then unpack it there.

        ``progress(bytes_received, None)``: the zip is made on the fly, its size is unknown.
        """
        op = OPERATIONS["export"]
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        params = {k: _query_value(v) for k, v in
                  {"format": fmt, "query": query, "as_of": as_of, "images": bool(images)}.items() if v is not None}
        with tempfile.TemporaryFile(dir=out) as spool:
            try:
                with self.client.stream("GET", self.path(op, {"project": project, "dataset": dataset}),
                                        params=params, timeout=None,
                                        auth=self._auth or httpx.USE_CLIENT_DEFAULT) as response:
                    if response.status_code >= 400:
                        response.read()
                        _raise_for(response)
                    received = 0
                    for chunk in response.iter_bytes(1 << 20):
                        spool.write(chunk)
                        received += len(chunk)
                        if progress:
                            progress(received, None)
            except httpx.TransportError as exc:
                raise TransportError(f"export from {self.host} broke off: {exc}", {"host": self.host}) from exc
            spool.seek(0)
            from annostream.formats import DirSink

            sink = DirSink(out)  # every member confined to ``out``, whatever the zip says
            with zipfile.ZipFile(spool) as archive:
                for info in archive.infolist():
                    if not info.is_dir():
                        with archive.open(info) as member:
                            sink.write(info.filename, iter(lambda m=member: m.read(1 << 20), b""))
        return orjson.loads((out / EXPORT_MANIFEST).read_bytes())

    def _stage(self, project: str, data: bytes) -> str:
        return self.call("stage_blob", project=project, body=data)["sha256"]

    def import_coco(self, project: str, dataset: str, coco: dict[str, Any],
                    images_dir: Path, progress: Any = None) -> dict[str, Any]:
        """Stage every image as a blob, then post the COCO file naming them by sha256."""
        images = []
        total = len(coco.get("images", []))
        for n, image in enumerate(coco.get("images", []), 1):
            staged = dict(image)
            path = Path(images_dir) / str(image.get("file_name", ""))
            if path.is_file():
                staged["sha256"] = self._stage(project, path.read_bytes())
            images.append(staged)
            if progress:
                progress(n, total)
        return self.call("import_coco", project=project, dataset=dataset, format="coco",
                         body={**coco, "images": images})

    def import_source(self, project: str, dataset: str, source: Any, fmt: str,
                      progress: Any = None) -> dict[str, Any]:
        """Read every record first (so bad input fails before anything is sent), then stage
        each image as a blob and post the records as NDJSON: the server commits once."""
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
                    record["sha256"] = self._stage(project, Path(record["image_path"]).read_bytes())
                record["image_path"] = None
                body.write(orjson.dumps(record) + b"\n")
                if progress:
                    progress(n, total)
            body.seek(0)
            return self.call("import_records", project=project, dataset=dataset, format=fmt,
                             body=iter(lambda: body.read(1 << 20), b""))
