"""Where a serving process spends its wall time, by phase: off unless ``ANNOSTREAM_TIMINGS=1``.

Phases are summed per process (seconds and a count), across threads, since the process
started: ``database`` (statements executed, rows transferred included on PostgreSQL),
``object_store`` (time a reply waits for blob bytes), ``framing`` (building a reply's body
besides that wait) and ``request`` (a request from its first byte in to its last byte out).
Requests overlap, so the sums are thread-seconds, not wall time; their ratios are the split.
When off, every hook is one boolean test and the server exposes nothing (``/debug/timings``
is not mounted); when on, the route shows only these sums, never a name or a value.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

ENV = "ANNOSTREAM_TIMINGS"
ENABLED = os.environ.get(ENV, "") == "1"
PHASES = ("request", "database", "object_store", "framing")

_lock = threading.Lock()
_totals: dict[str, list[float]] = {}


def add(phase: str, seconds: float, count: int = 1) -> None:
    """Add ``seconds`` (and ``count`` events) to ``phase``; callers test ``ENABLED`` first."""
    with _lock:
        total = _totals.setdefault(phase, [0.0, 0])
        total[0] += seconds
        total[1] += count


def snapshot() -> dict[str, dict[str, float]]:
    """Every phase's seconds and count so far, plus this process's CPU seconds."""
    with _lock:
        out: dict[str, dict[str, float]] = {
            p: {"seconds": _totals.get(p, [0.0, 0])[0], "count": _totals.get(p, [0.0, 0])[1]} for p in PHASES
        }
    cpu = os.times()
    out["cpu"] = {"seconds": cpu.user + cpu.system, "count": 0}
    return out


def instrument_engine(engine: Any) -> None:
    """Time every statement the engine executes as ``database`` (only when enabled)."""
    if not ENABLED:
        return
    from sqlalchemy import event

    @event.listens_for(engine, "before_cursor_execute")
    def _start(conn: Any, *_args: Any) -> None:
        conn.info["annostream_t0"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _end(conn: Any, *_args: Any) -> None:
        t0 = conn.info.pop("annostream_t0", None)
        if t0 is not None:
            add("database", time.perf_counter() - t0)
