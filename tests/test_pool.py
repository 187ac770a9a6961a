"""The socket layer under the SDK's HTTP client (``client/transports/pool.py``): bodies read
whole or streamed by what they declare, failures raised as the httpx errors the retry policy
tells apart, and a connection whose body was left unread never used again."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

from annostream.client.transports.http import _tls
from annostream.client.transports.pool import CHUNK, Urllib3Pool
from annostream.server.launch import free_port

pytestmark = pytest.mark.timeout(60)


class Peer:
    """A loopback socket server that runs ``answer`` for each request, one connection at a
    time, each kept open until the client closes it (or the test ends); counts connections."""

    def __init__(self, answer: Callable[[socket.socket], None]) -> None:
        self.answer = answer
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.stop = threading.Event()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn, contextlib.suppress(OSError):
                conn.settimeout(0.2)
                while not self.stop.is_set():
                    try:
                        if not conn.recv(65536):
                            break
                    except TimeoutError:
                        continue
                    self.answer(conn)


@contextmanager
def peer(answer: Callable[[socket.socket], None]) -> Iterator[Peer]:
    server = Peer(answer)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        thread.join()
        server.listener.close()


def _client(url: str, read: float = 5.0) -> httpx.Client:
    return httpx.Client(
        base_url=url,
        timeout=httpx.Timeout(5.0, read=read),
        transport=Urllib3Pool(maxsize=4, ssl_context=_tls()),
    )


def _chunked(conn: socket.socket, pieces: int, size: int) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(pieces):
        conn.sendall(b"%x\r\n%s\r\n" % (size, b"x" * size))
    conn.sendall(b"0\r\n\r\n")


def test_a_declared_body_comes_whole_and_an_undeclared_one_in_pieces() -> None:
    body = b"y" * (3 << 20)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    with peer(lambda conn: conn.sendall(head + body)) as p, _client(p.url).stream("GET", "/") as r:
        assert list(r.iter_raw()) == [body]
    with peer(lambda conn: _chunked(conn, 48, 1 << 16)) as p, _client(p.url).stream("GET", "/") as r:
        pieces = list(r.iter_raw())
    assert sum(map(len, pieces)) == 48 << 16
    assert len(pieces) > 1 and max(map(len, pieces)) <= CHUNK, "streamed, never held whole"


def test_failures_are_the_httpx_errors_the_retry_policy_tells_apart() -> None:
    with pytest.raises(httpx.ConnectError):  # nothing listens: never sent, safe to repeat
        _client(f"http://127.0.0.1:{free_port()}").get("/")
    with peer(lambda conn: threading.Event().wait(2.0)) as p, pytest.raises(httpx.ReadTimeout):
        _client(p.url, read=0.3).get("/")

    def cut(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"z" * 10)
        conn.close()

    with peer(cut) as p, pytest.raises(httpx.RemoteProtocolError):
        _client(p.url).get("/")

    def cut_in_headers(conn: socket.socket) -> None:  # Python's parser takes EOF for their end
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Revision: 3\r\n")
        conn.close()

    with peer(cut_in_headers) as p, pytest.raises(httpx.RemoteProtocolError, match="no length"):
        _client(p.url).get("/")


def test_connections_are_kept_alive_unless_a_body_was_left_unread() -> None:
    with peer(lambda conn: _chunked(conn, 64, 1 << 16)) as p:
        client = _client(p.url)
        for _ in range(3):
            assert len(client.get("/").content) == 64 << 16
        assert p.connections == 1, "one connection for three replies read whole"
        with client.stream("GET", "/") as response:
            next(response.iter_raw())  # one piece, then given up: the rest is still on the wire
        assert len(client.get("/").content) == 64 << 16, "the next reply is its own, not the rest"
        assert p.connections == 2
