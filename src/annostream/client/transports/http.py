"""The wire API over HTTP (httpx, on urllib3 sockets: ``pool.py``), every call made from its declaration.

One keep-alive pool per process, opened lazily and again after a fork, so DataLoader
workers never share a socket with their parent. Every request is made whole under a retry
policy (``annostream.client.retry``: the body read to its end and checked, e.g. blobs
against their sha256, before it counts). Or an injected ``httpx.Client`` (``client=``): for instance
``fastapi.testclient.TestClient(app)``, which carries the same calls to an ASGI app in this
process; an injected client is used as given (its own base URL, timeouts and retries) and
belongs to the process that made it.

Invariant: this module imports neither the service layer nor SQLAlchemy (tested).
"""

from __future__ import annotations

import os
import ssl
import tempfile
import threading
import zipfile
from functools import cache, partial
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import httpx
import numpy as np
import orjson
from pydantic import BaseModel

from annostream import frames
from annostream.client import retry as retrying
from annostream.client.integrity import verified_blob, verified_frames
from annostream.client.transports.base import Transport
from annostream.client.transports.pool import Urllib3Pool
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


def _loads(body: bytes) -> Any:
    """JSON of a body that came with a success status; a damaged one is fetched again."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise retrying.Corrupt(f"body of {len(body)} bytes is not JSON: {exc}") from exc


@cache
def _tls() -> ssl.SSLContext:
    """The process's TLS context, made once (loading the CA bundle costs ~25 ms of CPU) and
    inherited by forked DataLoader workers, rather than made again by every client's pool."""
    return httpx.create_ssl_context()


class HttpTransport(Transport):
    """A server's ``/api/v2`` reached with httpx, with an API key when one is given."""

    def __init__(
        self,
        host: str,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        timeout: float = 60.0,
        retry: retrying.Retry | None = None,
        pool_size: int = 16,
        client: httpx.Client | None = None,
    ) -> None:
        self.host = host.rstrip("/")
        self._auth = (client_id, client_secret) if client_id and client_secret else None
        self._timeout = timeout
        self.retry = retry or retrying.Retry()
        self._reach = retrying.Reach()
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
                    self._client = httpx.Client(
                        base_url=self.host,
                        timeout=self._timeout,
                        transport=Urllib3Pool(maxsize=self._pool_size, ssl_context=_tls()),
                    )
                    self._pid = os.getpid()
        return self._client

    def _request(
        self, method: str, path: str, *, parse: Any = None, idempotent: bool = False, **kwargs: Any
    ) -> Any:
        """``parse(response)`` (the response by default) of a request made whole under the
        retry policy; errors raised as the server sent them."""
        kwargs.setdefault("auth", self._auth or httpx.USE_CLIENT_DEFAULT)

        def checked(response: httpx.Response) -> Any:
            _raise_for(response)
            return parse(response) if parse is not None else response

        return retrying.request(
            self.client,
            self.retry,
            method,
            path,
            parse=checked,
            idempotent=idempotent,
            reach=self._reach,
            follow_redirects=False,
            **kwargs,
        )

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
            form = {
                k: orjson.dumps(body.get(k) or default).decode()
                for k, default in (("instances", []), ("metadata", {}))
            }
            return {"files": {"file": (body.get("filename") or "upload", body["data"])}, "data": form}
        media = "application/x-ndjson" if op.body == "ndjson" else "application/octet-stream"
        return {"content": body, "headers": {"Content-Type": media}}

    def call(self, name: str, /, **args: Any) -> Any:
        op = OPERATIONS[name]
        params = {k: _query_value(args[k]) for k in op.query_params if args.get(k) is not None}
        kwargs = self._body(op, args.get("body"))
        headers = {h: str(args[k]) for k, h in op.headers.items() if args.get(k) is not None}
        if headers:
            kwargs["headers"] = {**kwargs.get("headers", {}), **headers}
        if "wait" in op.params and self._injected is None:  # a long poll: the read timeout allows for it
            kwargs["timeout"] = httpx.Timeout(self._timeout + float(args.get("wait") or 0))
        return self._request(
            op.method,
            self.path(op, args),
            params=params,
            idempotent=op.repeatable,
            parse=lambda response: self._decode(op, response, args),
            **kwargs,
        )

    def _decode(self, op: Op, response: httpx.Response, args: dict[str, Any]) -> Any:
        """What ``call`` returns for ``response``, by the declared reply kind; a body that
        fails its checks is ``Corrupt`` (and fetched again)."""
        if op.reply == "json":
            return _loads(response.content)
        if op.reply == "ids":
            count = response.headers.get("X-Count")
            if len(response.content) % 8 or (count is not None and int(count) * 8 != len(response.content)):
                raise retrying.Corrupt(f"id list of {len(response.content)} bytes for {count} ids")
            ids = np.frombuffer(response.content, dtype="<i8").astype(np.int64)
            return ids, int(response.headers["X-Revision"])
        if op.reply == "items":
            rev = int(response.headers["X-Revision"])
            if response.headers.get("content-type", "").startswith(frames.MEDIA_TYPE):
                body = args.get("body")
                asked = None if body is None else list(body["ids"] if isinstance(body, dict) else body.ids)
                return verified_frames(response.content, asked), rev
            return [(item, None) for item in _loads(response.content)["items"]], rev
        if op.reply == "blob" and response.is_redirect and "location" in response.headers:
            # A presigned object-store URL: fetched without our key, and not through an
            # injected client (which may reach only the app it was made for).
            location = response.headers["location"]
            if self._injected is not None:
                followed = httpx.get(location, timeout=self._timeout)
                _raise_for(followed)
                return verified_blob(args["sha256"], followed.content)

            def fetched(reply: httpx.Response) -> bytes:
                _raise_for(reply)
                return verified_blob(args["sha256"], reply.content)

            return retrying.request(
                self.client,
                self.retry,
                "GET",
                location,
                parse=fetched,
                idempotent=True,
                reach=self._reach,
                auth=None,
            )
        if op.reply == "blob":
            return verified_blob(args["sha256"], response.content)
        return response.content

    # --- transfers -------------------------------------------------------------------------

    def export(
        self,
        project: str,
        dataset: str,
        fmt: str,
        out: Path,
        query: str | None,
        as_of: int | None,
        images: bool | str,
        progress: Any = None,
    ) -> dict[str, Any]:
        """Stream the export's zip to a temporary file in ``out``, then unpack it there.

        ``progress(bytes_received, None)``: the zip is made on the fly, its size is unknown.
        """
        op = OPERATIONS["export"]
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        params = {
            k: _query_value(v)
            for k, v in {"format": fmt, "query": query, "as_of": as_of, "images": bool(images)}.items()
            if v is not None
        }
        with tempfile.TemporaryFile(dir=out) as spool:
            try:
                with self.client.stream(
                    "GET",
                    self.path(op, {"project": project, "dataset": dataset}),
                    params=params,
                    timeout=None,
                    auth=self._auth or httpx.USE_CLIENT_DEFAULT,
                ) as response:
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
                raise TransportError(
                    f"export from {self.host} broke off: {exc}", {"host": self.host}
                ) from exc
            spool.seek(0)
            from annostream.formats import DirSink

            sink = DirSink(out)  # every member confined to ``out``, whatever the zip says
            with zipfile.ZipFile(spool) as archive:
                for info in archive.infolist():
                    if not info.is_dir():
                        with archive.open(info) as member:
                            sink.write(info.filename, iter(partial(member.read, 1 << 20), b""))
        manifest: dict[str, Any] = orjson.loads((out / EXPORT_MANIFEST).read_bytes())
        return manifest

    def _stage(self, project: str, data: bytes | None) -> str:
        sha256: str = self.call("stage_blob", project=project, body=data)["sha256"]
        return sha256

    def import_source(
        self,
        project: str,
        dataset: str,
        source: Any,
        fmt: str,
        progress: Any = None,
        key: str | None = None,
        duplicates: str = "skip",
    ) -> dict[str, Any]:
        """Read every record first (so bad input fails before anything is sent), then stage
        each image (``stage_blob``) and post the records as NDJSON: the server commits once.

        The post carries the idempotency ``key``: when its reply is lost it is sent again
        (whole: ``_Rewound``), and the server answers the first commit's result instead of
        committing twice.
        """
        from annostream.formats import read_record_image

        with tempfile.TemporaryFile() as parsed, tempfile.TemporaryFile() as body:
            total = 0
            for record in source.records:
                if record.get("data") is not None:  # in-memory bytes (upload_many): staged now
                    record = {**record, "sha256": self._stage(project, read_record_image(record))}
                    record.pop("data")
                parsed.write(orjson.dumps(record) + b"\n")
                total += 1
            head = {"labels": source.labels, "attribute_groups": source.attribute_groups, "total": total}
            body.write(orjson.dumps(head) + b"\n")
            parsed.seek(0)
            for n, line in enumerate(parsed, 1):
                record = orjson.loads(line)
                data = read_record_image(record) if record.get("image_path") else None
                if data is not None:
                    record["sha256"] = self._stage(project, data)
                record.pop("image_path", None)
                body.write(orjson.dumps(record) + b"\n")
                if progress:
                    progress(n, total)
            attempt = 1
            while True:
                try:
                    return cast(
                        "dict[str, Any]",
                        self.call(
                            "import_records",
                            project=project,
                            dataset=dataset,
                            format=fmt,
                            duplicates=duplicates,
                            key=key,
                            body=_Rewound(body),
                        ),
                    )
                except (TransportError, httpx.StreamError):
                    if key is None or attempt >= 4:
                        raise
                    attempt += 1


class _Rewound:
    """A file's bytes from its start, every time they are iterated: a request body that a retry
    (ours or the retrying transport's) sends whole again, never empty."""

    def __init__(self, file: Any) -> None:
        self.file = file

    def __iter__(self) -> Any:
        self.file.seek(0)
        while chunk := self.file.read(1 << 20):
            yield chunk
