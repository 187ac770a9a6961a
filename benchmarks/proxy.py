"""A TCP proxy that adds a fixed delay each way, to stand in for a network link.

With 10 ms each way a request pays 20 ms of round trip, about what a server in the same
cloud region costs. Bytes are forwarded in order per connection; the delay is applied to
each chunk as it arrives, so throughput is not throttled, only latency added.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, chunk = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not chunk:
                break
            writer.write(chunk)
            await writer.drain()
        writer.close()

    sender = asyncio.create_task(send())
    try:
        while True:
            chunk = await reader.read(1 << 18)
            queue.put_nowait((loop.time() + delay, chunk))
            if not chunk:
                break
        await sender
    except (ConnectionError, asyncio.CancelledError):
        sender.cancel()


async def _serve(target: tuple[str, int], delay: float) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*target)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(
            _pipe(client_r, server_w, delay), _pipe(server_r, client_w, delay), return_exceptions=True
        )

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def main() -> None:
    """``python -m benchmarks.proxy HOST:PORT DELAY_S``: prints its port, then serves."""
    host, port = sys.argv[1].rsplit(":", 1)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_serve((host, int(port)), float(sys.argv[2])))


@contextmanager
def delayed(url: str, rtt_ms: float) -> Iterator[str]:
    """``url`` itself when ``rtt_ms`` is 0, else the URL of a proxy (its own process) adding it."""
    if rtt_ms <= 0:
        yield url
        return
    parsed = urlparse(url)
    target = f"{parsed.hostname or '127.0.0.1'}:{parsed.port or 80}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.proxy", target, str(rtt_ms / 2000)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"{parsed.scheme}://127.0.0.1:{port}{parsed.path}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
