"""Retrying a request as a whole: the send, the status and the entire body, then its check.

An attempt succeeds only when the response was read to its end and the caller's ``parse``
accepted it. Everything short of that is a failed attempt and the whole request is made
again: a refused or reset connection, a body cut off mid-way (``RemoteProtocolError``,
``ReadError``), a timeout, a 429/502/503/504, or a body that fails its own integrity check
(``parse`` raises ``Corrupt``: frames that do not add up, blob bytes that do not hash to
their name). Waits grow exponentially with full jitter (uniform in ``[0, min(cap, base *
2**n)]``), and a ``Retry-After`` header is honoured.

Invariants:
- A policy (``Retry``) bounds a request by tries and by time from its first attempt,
  whichever runs out first; then ``TransportError`` names the URL, the last status or
  exception, and how many tries were made.
- A server this client has never had a response from gets only ``connect_budget`` seconds
  of connection errors: a wrong URL or a server that is not running fails fast, with a hint.
  Once any response came (``Reach``), connection errors get the whole budget: the server
  went away and is probably coming back (a restart).
- A request that is not idempotent is made again only when it certainly did nothing: the
  connection was never opened, or the server answered 429.
"""

from __future__ import annotations

import contextlib
import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from annostream.errors import TransportError

T = TypeVar("T")

RETRY_STATUSES = frozenset({429, 502, 503, 504})


class Corrupt(Exception):
    """A body that arrived whole by HTTP's account but fails its own integrity check."""


@dataclass(frozen=True)
class Retry:
    """How hard one request is tried: ``Project(..., retry=Retry(budget=300))``.

    ``tries``: attempts at most (1 = no retry). ``budget``: seconds from the first attempt
    after which no new attempt starts. ``connect_budget``: the same, for connection errors
    to a server never reached. ``backoff`` and ``max_backoff``: the first wait's ceiling and
    the cap of every wait (full jitter draws below them). The default rides out a server
    restart of 30 s.
    """

    tries: int = 50
    budget: float = 60.0
    connect_budget: float = 2.0
    backoff: float = 0.1
    max_backoff: float = 4.0
    statuses: frozenset[int] = RETRY_STATUSES

    def __post_init__(self) -> None:
        if self.tries < 1:
            raise ValueError("Retry.tries must be at least 1")
        if min(self.budget, self.connect_budget, self.backoff, self.max_backoff) < 0:
            raise ValueError("Retry times must not be negative")

    def wait(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (full jitter)."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** min(failures - 1, 32))
        return (rng or random).uniform(0.0, ceiling)


NO_RETRY = Retry(tries=1)


@dataclass
class Reach:
    """Whether a server ever answered this client (one per transport, kept across forks)."""

    reached: bool = False


def retry_after(response: httpx.Response) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    with contextlib.suppress(ValueError):  # not delta-seconds: an HTTP date, then
        return max(0.0, float(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _never_sent(exc: Exception) -> bool:
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not text.startswith(type(exc).__name__) else text


def request(
    client: httpx.Client,
    policy: Retry,
    method: str,
    url: str,
    *,
    parse: Callable[[httpx.Response], T],
    idempotent: bool,
    reach: Reach,
    sleep: Callable[[float], None] = time.sleep,
    **kwargs: Any,
) -> T:
    """``parse(response)`` of one request, retried as a whole under ``policy``.

    ``parse`` sees every response not retried (errors included, to raise them) after its
    body was read entirely; raising ``Corrupt`` from it counts as a failed attempt.
    """
    started = time.monotonic()

    def where() -> str:  # only when an error names it: joining URLs costs ~40 us
        return str(client.base_url.join(url)) if "://" not in url else url

    tries = 0
    last = ""
    while True:
        tries += 1
        delay: float | None = None
        connect_failure = False
        options = kwargs
        if not reach.reached and "timeout" not in kwargs:  # a black-holed host fails fast too
            t = client.timeout
            connect = min(
                t.connect if t.connect is not None else policy.connect_budget, max(policy.connect_budget, 0.1)
            )
            options = {
                **kwargs,
                "timeout": httpx.Timeout(connect=connect, read=t.read, write=t.write, pool=t.pool),
            }
        try:
            response = client.request(method, url, **options)
        except httpx.TransportError as exc:
            last = _describe(exc)
            connect_failure = _never_sent(exc)
            if not (idempotent or connect_failure):
                raise TransportError(
                    f"{method} {where()} failed and is not safe to repeat: {last}",
                    {"url": where(), "tries": tries},
                ) from exc
        else:
            reach.reached = True
            retryable = response.status_code in policy.statuses and (
                idempotent or response.status_code == 429
            )
            if not retryable:
                try:
                    return parse(response)
                except Corrupt as exc:
                    if not idempotent:
                        raise TransportError(f"{method} {where()}: {exc}", {"url": where()}) from exc
                    last = f"corrupt body: {exc}"
            else:
                last = f"HTTP {response.status_code} {response.text[:200]!r}"
                delay = retry_after(response)
        elapsed = time.monotonic() - started
        budget = policy.budget if reach.reached or not connect_failure else policy.connect_budget
        delay = policy.wait(tries) if delay is None else delay
        if tries >= policy.tries or elapsed + delay > budget:
            if connect_failure and not reach.reached:
                host = str(client.base_url).rstrip("/") or where()
                raise TransportError(
                    f"cannot reach annostream server at {host} (is `annostream serve` running at "
                    f"{host}?): {last}; {tries} tries in {elapsed:.1f} s",
                    {"url": where(), "tries": tries},
                )
            raise TransportError(
                f"{method} {where()} failed after {tries} tries in {elapsed:.1f} s; last: {last}",
                {"url": where(), "tries": tries, "last": last},
            )
        sleep(delay)
