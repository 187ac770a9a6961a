"""A TCP proxy on loopback that misbehaves on purpose, and counts what it did.

Per connection, drawn from a seeded generator: answer the first request with a 502 or 503
itself (``error``; ``error_first`` connections always, ``statuses`` and ``retry_after`` to
answer otherwise), or forward and then cut the connection (RST) after a random number of
response bytes (``cut``, ``cut_bytes``); any forwarded chunk may be held back a little
(``delay``, up to ``max_delay`` s); with ``corrupt`` a byte inside a JPEG in a response
(200 bytes after its ``JFIF`` marker) is flipped, which only a check of the bytes against
their sha256 notices. Connection decisions and chunk decisions draw from two generators, so
the sequence of per-connection faults for a seed does not depend on how the bytes happened
to be chunked. It runs an asyncio loop in a thread of the test process, so the
counters are plain attributes the test reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Self


@dataclass
class Faults:
    cut: float = 0.0
    cut_bytes: tuple[int, int] = (0, 65536)
    error: float = 0.0
    delay: float = 0.0
    max_delay: float = 0.02
    corrupt: float = 0.0
    error_first: int = 0
    statuses: tuple[int, ...] = (502, 503)
    retry_after: str | None = None


class FaultProxy:
    """``with FaultProxy(port, Faults(...)) as proxy: Project(..., host=proxy.url)``."""

    def __init__(self, target_port: int, faults: Faults, seed: int = 0) -> None:
        self.target_port = target_port
        self.faults = faults
        self.counts: Counter[str] = Counter()
        self._rng = random.Random(seed)  # per connection: error, where to cut
        self._chunk_rng = random.Random(seed + 1_000_003)  # per chunk: delay, corruption
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop
        )
        self._server = started.result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *_exc: object) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.counts["connections"] += 1
        f = self.faults
        if self.counts["connections"] <= f.error_first or self._rng.random() < f.error:
            await self._answer_error(client_r, client_w)
            return
        cut_at = self._rng.randint(*f.cut_bytes) if self._rng.random() < f.cut else None
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            self.counts["refused"] += 1
            client_w.transport.abort()
            return
        up = asyncio.create_task(self._pump(client_r, server_w, None, client_w, down=False))
        down = asyncio.create_task(self._pump(server_r, client_w, cut_at, server_w, down=True))
        with contextlib.suppress(asyncio.CancelledError):  # the proxy is closing
            await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
        for task in (up, down):
            if not task.done():
                task.cancel()
        for writer in (client_w, server_w):
            writer.close()  # flushes what is buffered (a cut already aborted both)

    async def _answer_error(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            await client_r.read(1 << 16)
            status = self._rng.choice(self.faults.statuses)
            body = b"injected by the fault proxy"
            extra = f"Retry-After: {self.faults.retry_after}\r\n" if self.faults.retry_after else ""
            client_w.write(
                f"HTTP/1.1 {status} Injected\r\nContent-Length: {len(body)}\r\n{extra}"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await client_w.drain()
            self.counts[str(status)] += 1
        except ConnectionError:
            pass
        finally:
            client_w.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        cut_at: int | None,
        other: asyncio.StreamWriter,
        *,
        down: bool,
    ) -> None:
        """Forward until EOF, or until ``cut_at`` bytes went by (then abort both sides);
        responses (``down``) may be corrupted."""
        sent = 0
        f = self.faults
        try:
            while True:
                chunk = await reader.read(1 << 16)
                if not chunk:
                    return
                if f.delay and self._chunk_rng.random() < f.delay:
                    self.counts["delays"] += 1
                    await asyncio.sleep(self._chunk_rng.uniform(0, f.max_delay))
                if down and f.corrupt:
                    chunk = self._maybe_corrupt(chunk)
                if cut_at is not None and sent + len(chunk) >= cut_at:
                    writer.write(chunk[: cut_at - sent])
                    await writer.drain()
                    self.counts["cuts"] += 1
                    writer.transport.abort()
                    other.transport.abort()
                    return
                writer.write(chunk)
                sent += len(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            return

    def _maybe_corrupt(self, chunk: bytes) -> bytes:
        at = chunk.find(b"JFIF")
        if at < 0 or at + 200 >= len(chunk) or self._chunk_rng.random() >= self.faults.corrupt:
            return chunk
        damaged = bytearray(chunk)
        damaged[at + 200] ^= 0xFF
        self.counts["corruptions"] += 1
        return bytes(damaged)

    def stats(self) -> dict[str, Any]:
        return dict(self.counts)
