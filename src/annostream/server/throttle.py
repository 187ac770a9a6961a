"""Per-caller bounds the HTTP layer enforces (concurrent long polls), and header values
built from stored names.

Invariants: a caller (a key's client id, or an anonymous caller's address) holds at most
``LIMITS.long_polls_per_caller`` waiting ``/changes`` requests in one server process; the
next gets 429 with ``Retry-After``, and a slot is given back however the wait ends. The
counts live in ``app.state.long_polls`` and are touched only on the event loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

from fastapi import Request

from annostream.errors import TooManyRequests
from annostream.limits import LIMITS
from annostream.server.auth import credentials_from_header


def caller_key(request: Request) -> str:
    """Whom a per-caller limit counts: the key (its client id; the policy has already checked
    it), else the address the request came from."""
    creds = credentials_from_header(request.headers.get("authorization"))
    if creds is not None:
        return f"key:{creds[0]}"
    return f"addr:{request.client.host if request.client else '?'}"


@contextmanager
def long_poll_slot(request: Request) -> Iterator[None]:
    """Hold one of the caller's long-poll slots for the duration of a wait, or raise 429."""
    counts: dict[str, int] = request.app.state.long_polls
    key = caller_key(request)
    cap = LIMITS.long_polls_per_caller
    if counts.get(key, 0) >= cap:
        err = TooManyRequests(f"at most {cap} concurrent long polls per caller; retry later", {"limit": cap})
        err.retry_after = 1
        raise err
    counts[key] = counts.get(key, 0) + 1
    try:
        yield
    finally:
        counts[key] -= 1
        if not counts[key]:
            del counts[key]


def attachment(filename: str) -> str:
    """A Content-Disposition for ``filename``: an ASCII fallback and the exact name as
    RFC 5987 ``filename*`` (headers are latin-1; a non-ASCII dataset name must not fail)."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\/;' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
