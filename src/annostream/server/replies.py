"""HTTP replies for each reply kind of a declaration (``Op.reply``), from what the service
function returned. The HTTP transport decodes exactly these (client/transports/http.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from annostream import frames
from annostream.operations import Op
from annostream.server.app import FastJSONResponse
from annostream.server.throttle import attachment
from annostream.service.derived import Picture
from annostream.service.handlers import ZipExport
from annostream.service.items import BlobRead, ItemBatch
from annostream.store import timings
from annostream.store.blobs import get_many

FRAME_CHUNK = 1 << 20
PRIVATE_IMMUTABLE = "private, max-age=31536000, immutable"

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
    "image": {
        200: {"content": {"image/jpeg": {}}, "description": "A picture made from a blob, immutable"},
        304: {"description": "Not modified (ETag)"},
    },
    "zip": {200: {"content": {"application/zip": {}}, "description": "A zip, made on the fly"}},
}


def blob_response(blob: BlobRead, request: Request) -> Response:
    """Blob bytes: immutable, ETag = sha256, Range supported (sendfile for local blobs).

    Where the blob store can presign (S3), answer 307 to a short-lived URL instead, so the
    bytes go from object storage to the client without passing through this process.
    """
    headers = {"ETag": f'"{blob.sha256}"', "Cache-Control": PRIVATE_IMMUTABLE}
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


def picture_response(picture: Picture, request: Request, cache_control: str = PRIVATE_IMMUTABLE) -> Response:
    """A derived picture (made from immutable inputs, so immutable), with its ETag."""
    headers = {
        "ETag": picture.etag,
        "Cache-Control": cache_control,
        "X-Derived": "made" if picture.made else "cached",
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match", "") == picture.etag:
        return Response(status_code=304, headers=headers)
    return Response(picture.data, media_type=picture.media_type, headers=headers)


class BlobSizeMismatch(RuntimeError):
    """A blob's bytes are not as long as the store records: the reply is cut short (the
    client sees a truncated body and fetches the batch again; ``annostream fsck`` finds it)."""


class _Framer:
    """The frames of a batch in buffers of about FRAME_CHUNK bytes (or one record, when it is
    larger), each built once: item headers copied in, and every blob read straight into its
    place (``readv`` into the buffer for a local file; one copy from other stores). The total
    length is known before the first byte (the headers are encoded first, blob sizes come from
    the store's records), so the reply has a Content-Length and goes to the socket uncopied."""

    def __init__(self, batch: ItemBatch) -> None:
        self.store = batch.store
        self.records: list[tuple[bytes, str | None, int]] = []
        for item in batch.wire_items:
            file = item["file"]
            sha, size = file["sha256"], file["size"]
            if sha is None:
                self.records.append((frames.encode_header(item, None), None, 0))
                continue
            if size is None:  # no blob row: learn the size from the bytes
                size = len(self.store.get(sha))
            self.records.append((frames.encode_header(item, size), sha, size))
        self.length = sum(len(h) + n for h, _, n in self.records)
        self._next = 0
        shas = [sha for _, sha, _ in self.records if sha is not None]
        # On local disk a blob is read by its path; elsewhere (S3) fetched concurrently where
        # the store can, in record order, as the buffers take them.
        self._local_file: Callable[[str], str] | None = getattr(self.store, "local_file", None)
        self._fetched: Iterator[bytes] = iter(()) if self._local_file else get_many(self.store, shas)
        self._extra = bytearray(1)

    @property
    def local(self) -> bool:
        """Whether the blobs are read from files on this machine."""
        return self._local_file is not None

    @property
    def done(self) -> bool:
        """Whether every record has been put in a buffer."""
        return self._next == len(self.records)

    def chunk(self) -> memoryview | None:
        """The next buffer of whole records; None after the last. Its time is the ``framing``
        phase (the blob reads inside it are also ``object_store``: the benchmark subtracts them)."""
        if not timings.ENABLED:
            return self._chunk()
        t0 = time.perf_counter()
        try:
            return self._chunk()
        finally:
            timings.add("framing", time.perf_counter() - t0)

    def _chunk(self) -> memoryview | None:
        start = end = self._next
        size = 0
        while end < len(self.records) and size < FRAME_CHUNK:
            size += len(self.records[end][0]) + self.records[end][2]
            end += 1
        if start == end:
            return None
        self._next = end
        # Not zeroed first (zeroing costs as much as reading the blobs from the page cache):
        # every byte is written below, or the buffer is never returned (BlobSizeMismatch).
        buffer = numpy.empty(size, numpy.uint8).data
        at = 0
        for header, sha, n in self.records[start:end]:
            head_end = at + len(header)
            buffer[at:head_end] = header
            at = head_end
            if sha is not None:
                self._read_into(sha, buffer[at : at + n])
                at += n
        if at != size:  # cannot happen: the sizes were summed from these very records
            raise RuntimeError(f"framed {at} bytes into a buffer of {size}")
        return buffer

    def _read_into(self, sha: str, target: memoryview) -> None:
        """``target`` filled with the blob's bytes, all of them; BlobSizeMismatch otherwise."""
        if self._local_file is None:
            data = next(self._fetched)
            if len(data) != len(target):
                raise BlobSizeMismatch(f"blob {sha} has {len(data)} bytes, the store records {len(target)}")
            target[:] = data
            return
        t0 = time.perf_counter() if timings.ENABLED else 0.0
        fd = os.open(self._local_file(sha), os.O_RDONLY | os.O_CLOEXEC)
        try:
            # Read at least once; a byte past the recorded size (into ``_extra``) means the
            # file is longer, an end before it that it is shorter.
            got = 0
            while True:
                n = os.readv(fd, [target[got:], self._extra])
                got += n
                if n == 0 or got >= len(target):
                    break
        finally:
            os.close(fd)
        if timings.ENABLED:
            timings.add("object_store", time.perf_counter() - t0)
        if got != len(target):
            raise BlobSizeMismatch(f"blob {sha} is not {len(target)} bytes long on disk")


class FramedResponse(Response):
    """Items with their blobs, framed, with a Content-Length. Made where the batch was read
    (where ``render`` runs), it encodes the headers and fills the first buffer at once. Each
    following buffer is filled on the event loop when the blobs are files on this machine (a
    read of at most FRAME_CHUNK bytes from the page cache costs less than a hop to a worker
    thread and back, and other requests go on between buffers, while this one waits for its
    socket), else in a worker thread (an object store's fetches wait on the network). Every
    buffer goes to the socket as one message, uncopied."""

    media_type = frames.MEDIA_TYPE

    def __init__(self, batch: ItemBatch) -> None:
        super().__init__(headers={"X-Revision": str(batch.revision)}, media_type=frames.MEDIA_TYPE)
        t0 = time.perf_counter()
        self.framer = _Framer(batch)  # the headers, encoded: ``framing`` too
        if timings.ENABLED:
            timings.add("framing", time.perf_counter() - t0, 0)
        self.headers["content-length"] = str(self.framer.length)
        self.first = self.framer.chunk()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        chunk, self.first = self.first, None
        while chunk is not None:
            more = not self.framer.done
            await send({"type": "http.response.body", "body": chunk, "more_body": more})
            if not more:
                chunk = None
            elif self.framer.local:
                chunk = self.framer.chunk()
            else:
                chunk = await run_in_threadpool(self.framer.chunk)
        if self.framer.length == 0:
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
            {"items": batch.wire_items, "revision": batch.revision},
            headers={"X-Revision": str(batch.revision)},
        )
        if timings.ENABLED:
            timings.add("framing", time.perf_counter() - t0)
        return reply
    if op.reply == "blob":
        return blob_response(result, request)
    if op.reply == "image":
        return picture_response(result, request)
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
