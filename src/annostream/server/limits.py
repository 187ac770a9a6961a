"""Request bodies under a size cap per route family (``json``, ``upload``, ``import``).

The cap is checked against ``Content-Length`` before a byte is read, and counted again while
reading (a chunked body declares no length), so an oversized body costs the server at most
one cap's worth of reading and answers 413 ``too_large``. Bodies are read only here, and only
after the route's policy dependency has let the caller in (server/api_v2.py,
server/diffgram_compat.py). The JSON form fields of a multipart upload are held in memory,
so each is capped at the ``json`` cap whatever the upload cap is (the file part is spooled),
and so is each line of an NDJSON body (the body is spooled, its lines parsed one by one).
A body that must be read before its project is known (a legacy route naming the project
inside its body) is read only from an authenticated or anonymous caller, under
``PRE_AUTH_BYTES``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import IO, Any

import orjson
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from annostream.errors import InvalidInput, PayloadTooLarge
from annostream.operations import Family, Op

MiB = 1 << 20
PRE_AUTH_BYTES = 64 << 10  # a body read before authorization (its project is named inside it)


@dataclass(frozen=True)
class BodyLimits:
    """Largest body accepted per family, in bytes (``ANNOSTREAM_MAX_{JSON,UPLOAD,IMPORT}_BYTES``)."""

    json: int = 64 * MiB
    upload: int = 2048 * MiB
    imports: int = 4096 * MiB

    @classmethod
    def from_env(cls) -> BodyLimits:
        def get(name: str, default: int) -> int:
            return int(os.environ.get(f"ANNOSTREAM_MAX_{name}_BYTES") or default)

        return cls(get("JSON", cls.json), get("UPLOAD", cls.upload), get("IMPORT", cls.imports))

    def cap(self, family: Family) -> int:
        return {"json": self.json, "upload": self.upload, "import": self.imports}[family]


def _too_large(cap: int, family: Family) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"request body over the {cap} byte limit of {family} requests", {"limit": cap, "family": family}
    )


def _capped(request: Request, cap: int, family: Family) -> Request:
    """``request`` with a receive channel that refuses to deliver more than ``cap`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise _too_large(cap, family)
    seen = 0
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]] = request.receive

    async def counted() -> MutableMapping[str, Any]:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > cap:
                raise _too_large(cap, family)
        return message

    return Request(request.scope, counted)


def _json(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body: not valid JSON ({exc})", {"field": "body"}) from exc


async def _multipart(request: Request, fields: tuple[str, ...], field_cap: int) -> dict[str, Any]:
    """One ``file`` part plus the JSON form ``fields``, each at most ``field_cap`` bytes."""
    try:
        form = await request.form(max_files=1, max_fields=8, max_part_size=field_cap)
    except StarletteHTTPException as exc:  # a field over its cap, or a malformed multipart body
        if "exceeded maximum size" in str(exc.detail):
            raise _too_large(field_cap, "json") from exc
        raise InvalidInput(f"body: {exc.detail}", {"field": "body"}) from exc
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InvalidInput("file: Field required", {"field": "file"})
    body: dict[str, Any] = {"filename": upload.filename or "upload", "data": await upload.read()}
    for name in fields:
        value = form.get(name)
        if isinstance(value, str) and value:
            try:
                body[name] = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                raise InvalidInput(f"{name}: not valid JSON ({exc})", {"field": name}) from exc
    await form.close()
    return body


async def read_body(request: Request, op: Op, limits: BodyLimits, cap: int | None = None) -> Any:
    """``op``'s body as its service function takes it (for ``ndjson``: a spooled binary file
    the caller closes), refusing what is over the cap of ``op.family`` (or ``cap``, lower)."""
    cap = min(cap, limits.cap(op.family)) if cap is not None else limits.cap(op.family)
    capped = _capped(request, cap, op.family)
    if op.body == "multipart":
        return await _multipart(capped, op.form_fields, min(cap, limits.json))
    if op.body == "ndjson":
        spool: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (handed to the caller, who closes it)
        line = 0  # bytes since the last newline: each line is parsed in memory, so it is capped
        try:
            async for chunk in capped.stream():
                spool.write(chunk)
                end = chunk.rfind(b"\n")
                line = line + len(chunk) if end < 0 else len(chunk) - end - 1
                if line > limits.json:
                    raise PayloadTooLarge(
                        f"an NDJSON line over the {limits.json} byte limit of json requests",
                        {"limit": limits.json, "family": "json"},
                    )
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        return spool
    data = b"".join([chunk async for chunk in capped.stream()])
    if op.body == "raw":
        return data
    return _json(data)
