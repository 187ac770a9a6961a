"""HTTP replies for each reply kind of a declaration (``Op.reply``), from what the service
function returned. The HTTP transport decodes exactly these (client/transports/http.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from annostream import frames
from annostream.operations import Op
from annostream.schema import Item
from annostream.server.app import FastJSONResponse
from annostream.server.throttle import attachment
from annostream.service.handlers import ZipExport
from annostream.service.items import BlobRead, ItemBatch
from annostream.store import timings

FRAME_CHUNK = 1 << 20

Responses = dict[int | str, dict[str, Any]]
BLOB_RESPONSES: Responses = {
    200: {"content": {"*/*": {}}, "description": "The blob's bytes"},
    304: {"description": "Not modified (ETag)"},
    307: {"description": "To a presigned URL"},
}
# What each reply kind answers besides JSON, for the OpenAPI document (schemathesis checks it).
RESPONSES_BY_REPLY: dict[str, Responses] = {
    "json": {},
    "ids": {200: {"content": {"application/octet-stream": {}}, "description": "int64 ids, little-endian"}},
    "items": {
        200: {
            "content": {"application/json": {}, frames.MEDIA_TYPE: {}},
            "description": "Items (JSON), or framed with their blobs",
        }
    },
    "blob": BLOB_RESPONSES,
    "zip": {200: {"content": {"application/zip": {}}, "description": "A zip, made on the fly"}},
}


def blob_response(blob: BlobRead, request: Request) -> Response:
    """Blob bytes: immutable, ETag = sha256, Range supported (sendfile for local blobs).

    Where the blob store can presign (S3), answer 307 to a short-lived URL instead, so the
    bytes go from object storage to the client without passing through this process.
    """
    headers = {"ETag": f'"{blob.sha256}"', "Cache-Control": "private, max-age=31536000, immutable"}
    if request.headers.get("if-none-match", "").strip('"') == blob.sha256:
        return Response(status_code=304, headers=headers)
    url = blob.presigned_url()
    if url is not None:
        return RedirectResponse(
            url, status_code=307, headers={"ETag": headers["ETag"], "Cache-Control": "private, no-store"}
        )
    path = blob.local_path()
    if path is not None:
        return FileResponse(path, media_type=blob.content_type, headers=headers)
    return Response(blob.read(), media_type=blob.content_type, headers=headers)


def _next_parts(pairs: Iterator[tuple[Item, bytes | None]]) -> list[bytes]:
    """The frames of the next items, about FRAME_CHUNK bytes of them, as separate parts (a
    header, then the blob's bytes as read, never joined); empty at the end."""
    parts: list[bytes] = []
    size = 0
    for item, data in pairs:
        header = frames.encode_header(item, None if data is None else len(data))
        parts.append(header)
        size += len(header)
        if data is not None:
            parts.append(data)
            size += len(data)
        if size >= FRAME_CHUNK:
            break
    return parts


def _timed_parts(pairs: Iterator[tuple[Item, bytes | None]]) -> list[bytes]:
    """``_next_parts``, its time counted as ``framing`` (the blob waits inside it are
    ``object_store``, and the benchmark subtracts them)."""
    t0 = time.perf_counter()
    try:
        return _next_parts(pairs)
    finally:
        timings.add("framing", time.perf_counter() - t0)


class FramedResponse(Response):
    """Items with their blobs, framed: one worker-thread hop reads (blobs included) and
    encodes each chunk of about FRAME_CHUNK bytes; its parts go to the socket as they are,
    without being copied into one buffer."""

    media_type = frames.MEDIA_TYPE

    def __init__(self, batch: ItemBatch) -> None:
        super().__init__(headers={"X-Revision": str(batch.revision)}, media_type=frames.MEDIA_TYPE)
        del self.headers["content-length"]
        self.pairs = batch.pairs

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        step = _timed_parts if timings.ENABLED else _next_parts
        while parts := await run_in_threadpool(step, self.pairs):
            for part in parts:
                await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def render(op: Op, result: Any, request: Request) -> Response:
    """The response for ``result`` of ``op``, by its declared reply kind."""
    if op.reply == "json":
        return FastJSONResponse(result, status_code=op.status)
    if op.reply == "ids":
        ids, rev = result
        return Response(
            ids.astype("<i8").tobytes(),
            media_type="application/octet-stream",
            headers={"X-Count": str(len(ids)), "X-Revision": str(rev)},
        )
    if op.reply == "items":
        batch: ItemBatch = result
        if batch.inline:
            return FramedResponse(batch)
        t0 = time.perf_counter()
        reply = FastJSONResponse(
            {"items": [item for item, _ in batch.pairs], "revision": batch.revision},
            headers={"X-Revision": str(batch.revision)},
        )
        if timings.ENABLED:
            timings.add("framing", time.perf_counter() - t0)
        return reply
    if op.reply == "blob":
        return blob_response(result, request)
    if op.reply == "zip":
        done: ZipExport = result
        return StreamingResponse(
            done.chunks,
            media_type="application/zip",
            headers={
                "X-Revision": str(done.revision),
                "X-Count": str(done.count),
                "Content-Disposition": attachment(done.filename),
            },
        )
    raise AssertionError(f"unknown reply kind {op.reply!r}")
