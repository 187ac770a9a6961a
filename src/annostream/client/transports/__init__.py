"""How the SDK reaches a store: over HTTP (``http``), or in-process on a local folder
(``embedded``), both behind ``base.Transport`` and both making the calls declared in
annostream/operations.py, so they return the same shapes and every test runs on both.

Neither holds domain logic: the HTTP side speaks the wire API, the embedded side calls the
service layer directly. ``connect`` picks one from a host string.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlparse

from annostream.client.retry import Retry
from annostream.client.transports.base import Item, Transport
from annostream.client.transports.embedded import EmbeddedTransport
from annostream.client.transports.http import HttpTransport

__all__ = ["EmbeddedTransport", "HttpTransport", "Item", "Transport", "connect"]


# host:port, or localhost / an IPv4 address alone: a server, whatever path follows.
_SERVER_WITHOUT_SCHEME = re.compile(r"^([\w.\-]+:\d+|localhost|\d+\.\d+\.\d+\.\d+)(/.*)?$")


def connect(
    host: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
    retry: Retry | None = None,
) -> Transport:
    """A transport for ``host``: ``http(s)://`` for a server, ``file://`` for a local folder.

    A host without a scheme (``127.0.0.1:8085``, ``localhost``) is a server over ``http://``;
    something that looks like a path is refused with the ``file://`` spelling, never opened
    as a folder. Credentials given with a folder are enforced there too (the key's role, as
    on a server). ``retry`` is the HTTP transport's policy (a local folder needs none).
    """
    host = host or os.environ.get("ANNOSTREAM_HOST") or "http://127.0.0.1:8085"
    if "://" not in host:
        if not _SERVER_WITHOUT_SCHEME.match(host):
            raise ValueError(
                f"host '{host}' has no scheme: write 'http://{host}' for a server, "
                f"or 'file://{host}' for a local store folder"
            )
        host = f"http://{host}"
    parsed = urlparse(host)
    if parsed.scheme in ("http", "https"):
        return HttpTransport(host, client_id, client_secret, retry=retry)
    if parsed.scheme == "file":
        # file:///abs/path, or file://rel/path (a relative folder, as people type it)
        relative = parsed.netloc not in ("", "localhost")
        return EmbeddedTransport(
            parsed.netloc + parsed.path if relative else parsed.path, client_id, client_secret
        )
    raise ValueError(f"unsupported host '{host}': use http(s)://... or file:///path")
