"""Progress bars for the SDK's long operations (rich, on stderr, gone when done).

``progress`` arguments take: ``None`` (the default: a bar unless ``ANNOSTREAM_PROGRESS=0``),
``True``/``False``, or a callable ``(done, total)`` that receives the counts instead of a bar
(``total`` is None when unknown, and ``done`` then counts bytes). A bar appears only once
the work has taken ``DELAY`` seconds, so quick calls print nothing. Work that has no counts
to report (one query on the server, such as the id list of a view: the number of rows is
known only when it ends) shows a spinner saying what it does and the time elapsed instead.
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
_SHOWING = threading.Lock()  # held while a bar or spinner is on screen: rich draws one at a time


def console() -> Any:
    """Where bars and spinners are drawn: stderr."""
    from rich.console import Console

    return Console(stderr=True)


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
            if time.monotonic() - self.started < DELAY or not _SHOWING.acquire(blocking=False):
                return
            self._start(total)
        self.bar.update(self.task, completed=done, total=total)

    def _start(self, total: int | None) -> None:
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
            console=console(),
            transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task(self.description, total=total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
            _SHOWING.release()


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


class Waiting:
    """What one long call that reports no counts is doing, shown as a spinner with the
    time elapsed once it has taken ``DELAY`` seconds (a timer thread draws it)."""

    def __init__(self, description: str, shown: bool) -> None:
        self.description = description
        self._shown = shown
        self._lock = threading.Lock()
        self._done = threading.Event()
        self.bar: Any = None
        self._timer: threading.Thread | None = None

    def _show(self) -> None:
        if self._done.wait(DELAY):
            return
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        with self._lock:
            if self._done.is_set() or not _SHOWING.acquire(blocking=False):
                return  # done, or another bar or spinner is on screen (one at a time)
            self.bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=console(),
                transient=True,
            )
            self.bar.start()
            self.bar.add_task(self.description, total=None)

    def __enter__(self) -> Waiting:
        if self._shown:
            self._timer = threading.Thread(target=self._show, daemon=True)
            self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._timer is not None:
            self._timer.join()
        with self._lock:
            if self.bar is not None:
                self.bar.stop()
                self.bar = None
                _SHOWING.release()


def waiting(description: str, progress: ProgressArg) -> Waiting:
    """A spinner for one long call that reports no counts (a single query on the server: how
    many rows it yields is known only when it ends), saying what it does and for how long."""
    return Waiting(description, wanted(progress))
