"""httpx's requests carried by urllib3's connection pool (an ``httpx.BaseTransport``).

Why: reading a streamed batch's body is most of the SDK's own CPU per item. httpx's default
transport (httpcore over h11) reads a body in 64 KiB pieces, each passed through several
layers and copied several times; urllib3 reads a body whose length is declared with one
``readinto`` loop into one buffer. Measured on a 3 MB ``items:batch`` body over loopback:
about a third of the client's CPU per item. Everything above the socket (retries, auth,
timeouts, redirects, decoding, the API) stays httpx's.

Invariants:
- urllib3 neither retries, redirects nor decodes (httpx and ``client.retry`` do): one call
  here is one attempt on the wire.
- A body of declared length up to ``WHOLE`` bytes is read in one piece; any other (an
  export's chunked zip) is streamed in ``CHUNK`` pieces, so memory stays flat.
- urllib3's errors reach the caller as httpx's, keeping the retry policy's distinction:
  ``ConnectError``/``ConnectTimeout`` (never sent, safe to repeat) versus errors after
  sending (``ReadTimeout``, ``ReadError``, ``RemoteProtocolError``).
- A connection goes back to the pool only after its response was read to the end; a
  response closed early closes its connection.
- A reply that can carry a body must declare its length or come chunked. Python's HTTP
  parser takes a connection closed inside the headers for their end, so a reply cut there
  would look whole (a 200 with no headers and an empty body); such a reply is a
  ``RemoteProtocolError``, as it is for httpx's own parser. Our server and object stores
  always frame their replies; a reply delimited by closing the connection is refused too.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

WHOLE = 64 << 20
CHUNK = 1 << 20


def _as_httpx(exc: HTTPError | OSError, request: httpx.Request) -> httpx.TransportError:
    """The httpx error that httpx's own transport raises for the same failure."""
    kind: type[httpx.TransportError]
    if isinstance(exc, NewConnectionError):
        kind = httpx.ConnectError  # refused, unreachable, unresolvable: nothing was sent
    elif isinstance(exc, ConnectTimeoutError):
        kind = httpx.ConnectTimeout
    elif isinstance(exc, ReadTimeoutError):
        kind = httpx.ReadTimeout
    elif isinstance(exc, SSLError):
        kind = httpx.ConnectError
    elif isinstance(exc, ProtocolError):
        kind = httpx.RemoteProtocolError  # dropped or cut short by the other end
    else:
        kind = httpx.ReadError
    return kind(f"{type(exc).__name__}: {exc}", request=request)


def _framed(response: urllib3.BaseHTTPResponse, method: str) -> bool:
    """Whether the reply's end can be told from a cut: a declared length, chunks, or no body."""
    headers = response.headers
    return (
        "content-length" in headers
        or "chunked" in headers.get("transfer-encoding", "").lower()
        or response.status in (204, 304)
        or response.status < 200
        or method == "HEAD"
    )


class _Body(httpx.SyncByteStream):
    """A response's body, read from urllib3 on iteration; its connection returned to the
    pool when the body was read whole, closed otherwise."""

    def __init__(self, response: urllib3.BaseHTTPResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        response = self._response
        length = response.length_remaining
        try:
            if length is not None and length <= WHOLE:
                yield response.read(decode_content=False)
            else:
                yield from response.stream(CHUNK, decode_content=False)
        except (HTTPError, OSError) as exc:
            raise _as_httpx(exc, self._request) from exc
        self._done = True

    def close(self) -> None:
        if not self._done:  # the rest may still be on its way: closed, never reused
            self._response.close()
        self._response.release_conn()


class Urllib3Pool(httpx.BaseTransport):
    """One urllib3 ``PoolManager`` (keep-alive connections per host) under an httpx client."""

    def __init__(self, *, maxsize: int, ssl_context: ssl.SSLContext) -> None:
        self._pools = urllib3.PoolManager(maxsize=maxsize, ssl_context=ssl_context)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        timeout = urllib3.Timeout(connect=timeouts.get("connect"), read=timeouts.get("read"))
        body: Any = request.content if isinstance(request.stream, httpx.ByteStream) else request.stream
        try:
            response = self._pools.urlopen(
                request.method,
                str(request.url),
                body=body or None,
                headers=urllib3.HTTPHeaderDict(request.headers.multi_items()),
                retries=False,
                redirect=False,
                assert_same_host=False,
                timeout=timeout,
                preload_content=False,
                decode_content=False,
            )
        except (HTTPError, OSError) as exc:
            raise _as_httpx(exc, request) from exc
        if not _framed(response, request.method):
            response.close()
            response.release_conn()
            raise httpx.RemoteProtocolError(
                f"reply {response.status} to {request.method} {request.url} declares no length "
                "and is not chunked: cut short, or delimited by closing the connection",
                request=request,
            )
        reason = (response.reason or "").encode("latin-1")
        return httpx.Response(
            response.status,
            headers=list(response.headers.items()),
            stream=_Body(response, request),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
        )

    def close(self) -> None:
        with contextlib.suppress(HTTPError, OSError):
            self._pools.clear()
