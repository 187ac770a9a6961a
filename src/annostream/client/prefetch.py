"""Read-ahead: keep a window of batch requests in flight ahead of the reader.

Latency to the server is paid once per window rather than once per batch: with ``window``
requests outstanding, a link with round-trip time T delivers a batch every T/window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetch(fetch: Callable[[T], R], batches: Iterable[T], window: int = 4) -> Iterator[R]:
    """``map(fetch, batches)`` in order, with up to ``window`` fetches running ahead.

    Threads are created when iteration starts (never inherited across a fork) and are shut
    down, with pending fetches cancelled, when the consumer stops early.
    """
    window = max(1, window)
    pending: deque[Future[R]] = deque()
    source = iter(batches)
    pool = ThreadPoolExecutor(max_workers=window, thread_name_prefix="annostream-prefetch")
    try:
        for batch in source:
            pending.append(pool.submit(fetch, batch))
            if len(pending) >= window:
                break
        while pending:
            result = pending.popleft().result()
            for batch in source:
                pending.append(pool.submit(fetch, batch))
                break
            yield result
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
