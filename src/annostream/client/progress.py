"""Progress bars for the SDK's long operations (rich, on stderr, gone when done).

``progress`` arguments take: ``None`` (the default: a bar unless ``ANNOSTREAM_PROGRESS=0``),
``True``/``False``, or a callable ``(done, total)`` that receives the counts instead of a bar
(``total`` is None when unknown, and ``done`` then counts bytes). A bar appears only once
the work has taken ``DELAY`` seconds, so quick calls print nothing.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

ENV = "ANNOSTREAM_PROGRESS"
DELAY = 0.5
Callback = Callable[[int, "int | None"], None]
ProgressArg = bool | Callback | None


def wanted(progress: ProgressArg) -> bool:
    """Whether a bar should be drawn for ``progress`` (a callable is not a bar)."""
    if progress is None:
        return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")
    return progress is True


class _Bar:
    """A rich bar started on the first report that comes ``DELAY`` seconds after the start."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.started = time.monotonic()
        self.bar: Any = None
        self.task: Any = None

    def __call__(self, done: int, total: int | None) -> None:
        if self.bar is None:
            if time.monotonic() - self.started < DELAY:
                return
            self._start(total)
        self.bar.update(self.task, completed=done, total=total)

    def _start(self, total: int | None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        counts = (
            (MofNCompleteColumn(), TimeRemainingColumn())
            if total is not None
            else (DownloadColumn(), TransferSpeedColumn())
        )
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            *counts,
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task(self.description, total=total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@contextmanager
def reporter(description: str, progress: ProgressArg) -> Iterator[Callback | None]:
    """A ``(done, total)`` callback for the work inside: the caller's own, a bar, or None."""
    if callable(progress):
        yield progress
        return
    if not wanted(progress):
        yield None
        return
    bar = _Bar(description)
    try:
        yield bar
    finally:
        bar.close()


@contextmanager
def waiting(description: str, progress: ProgressArg) -> Iterator[None]:
    """A spinner with the elapsed time for one long call that reports nothing while it runs
    (it appears only after ``DELAY`` seconds)."""
    if not wanted(progress):
        yield
        return
    from rich.console import Console

    done = threading.Event()
    status: list[Any] = []

    def show() -> None:
        if not done.wait(DELAY):
            status.append(Console(stderr=True).status(description))
            status[0].start()

    timer = threading.Thread(target=show, daemon=True)
    timer.start()
    try:
        yield
    finally:
        done.set()
        timer.join()
        if status:
            status[0].stop()
