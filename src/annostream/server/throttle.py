"""Bounds the HTTP layer enforces on concurrent long polls, and header values built from
stored names.

Invariants: a caller (a key's client id, or an anonymous caller's address) holds at most
``LIMITS.long_polls_per_caller`` waiting ``/changes`` requests in one server process, and
the process holds at most ``LIMITS.long_polls_per_process`` from all callers together
(each waiting poll asks the database every fraction of a second, so many callers, or one
caller with many addresses, must not add up to a saturated server); the next gets 429 with
``Retry-After`` while requests that do not wait, ``/healthz`` included, are served as
usual. A slot is given back however the wait ends. The counts live in
``app.state.long_polls`` and are touched only on the event loop.
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


def _busy(why: str, detail: dict[str, object]) -> TooManyRequests:
    err = TooManyRequests(f"{why}; retry later", detail)
    err.retry_after = 1
    return err


@contextmanager
def long_poll_slot(request: Request) -> Iterator[None]:
    """Hold one of the caller's and one of the process's long-poll slots for the duration of a
    wait, or raise 429."""
    counts: dict[str, int] = request.app.state.long_polls
    key = caller_key(request)
    cap, total = LIMITS.long_polls_per_caller, LIMITS.long_polls_per_process
    if counts.get(key, 0) >= cap:
        raise _busy(f"at most {cap} concurrent long polls per caller", {"limit": cap, "scope": "caller"})
    if sum(counts.values()) >= total:
        raise _busy(
            f"this server holds its most concurrent long polls ({total})", {"limit": total, "scope": "server"}
        )
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
