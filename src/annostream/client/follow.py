"""Follow mode: the changes to a view as they are committed, in commit order, resumable.

``ds.follow()`` yields change events (dicts: ``rev``, ``kind``, ``file_id``, ``dataset``)
from the change feed, long-polling while nothing happens. ``follow.cursor`` says how far it
got; ``ds.follow(since=cursor)`` in another process, or after the server came back, goes on
from there with nothing repeated and nothing skipped, even when it stopped in the middle of
a commit. ``ds.follow_items()`` turns the events into samples of newly added and newly
annotated files, read at the revision of their event: the stream a training loop wraps to
keep learning while annotation goes on.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple, cast

import numpy as np

from annostream.client.sample import make_sample
from annostream.errors import TransportError
from annostream.schema import ChangeEvent, ChangePage, Item, Sample

if TYPE_CHECKING:
    from annostream.client.dataset import Dataset

Event = ChangeEvent
SAMPLE_KINDS = frozenset({"file_added", "instances_changed"})


class Cursor(NamedTuple):
    """Every event of the commits up to ``rev`` was delivered, and the first ``skip`` events
    of the next commit that has any."""

    rev: int
    skip: int = 0


class Follow(Iterator[Event]):
    """An endless iterator of change events of one view (see the module docstring).

    It stops only when asked to: at ``until`` (a revision, once every commit up to it was
    delivered), after ``idle_timeout`` seconds without an event, or on ``close()``. A server
    that cannot be reached is retried with backoff for ``reconnect_for`` seconds.
    """

    def __init__(
        self,
        dataset: Dataset,
        since: Cursor | int,
        *,
        query: str | None = None,
        wait: float = 10.0,
        page_size: int = 1000,
        until: int | None = None,
        idle_timeout: float | None = None,
        reconnect_for: float = 60.0,
    ) -> None:
        self.dataset = dataset
        self.query = query
        self.wait = wait
        self.page_size = page_size
        self.until = until
        self.idle_timeout = idle_timeout
        self.reconnect_for = reconnect_for
        self._cursor = since if isinstance(since, Cursor) else Cursor(int(since))
        self._buffer: deque[tuple[Event, Cursor]] = deque()
        self._closed = False
        self._last_event = time.monotonic()

    def __repr__(self) -> str:
        return f"<Follow {self.dataset!r} at {self._cursor}>"

    @property
    def cursor(self) -> Cursor:
        """Where a new ``follow(since=...)`` should start to continue exactly from here."""
        return self._cursor

    def close(self) -> None:
        self._closed = True
        self._buffer.clear()

    def __enter__(self) -> Follow:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _page(self, wait: float) -> ChangePage:
        project = self.dataset.project
        started = time.monotonic()
        delay = 0.2
        while True:
            try:
                page = project.transport.changes(
                    project.string_id, self._cursor.rev, wait, self.dataset.name, self.query, self.page_size
                )
                return cast("ChangePage", page)
            except TransportError:
                if time.monotonic() - started > self.reconnect_for:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _fill(self) -> bool:
        """Fetch pages until events arrive; False when the follow should stop."""
        while not self._buffer:
            if self._closed or (self.until is not None and self._cursor.rev >= self.until):
                return False
            wait = self.wait
            if self.idle_timeout is not None:
                left = self.idle_timeout - (time.monotonic() - self._last_event)
                if left <= 0:
                    return False
                wait = min(wait, left)
            page = self._page(wait)
            self._buffer_page(page["events"], int(page["cursor"]))
        return True

    def _buffer_page(self, events: list[Event], page_cursor: int) -> None:
        """Queue a page's events, each with the cursor that holds once it is delivered."""
        done, skip = self._cursor
        i = 0
        while i < len(events):
            rev = events[i]["rev"]
            j = i
            while j < len(events) and events[j]["rev"] == rev:
                j += 1
            commit = events[i:j]
            for k, event in enumerate(commit):
                if k < skip:
                    continue
                last = k == len(commit) - 1
                after = Cursor(page_cursor if j == len(events) else rev) if last else Cursor(done, k + 1)
                self._buffer.append((event, after))
            done, skip, i = rev, 0, j
        if not events:
            self._cursor = Cursor(max(page_cursor, self._cursor.rev))
        elif not self._buffer:
            self._cursor = Cursor(page_cursor)

    def __next__(self) -> Event:
        if not self._fill():
            raise StopIteration
        event, self._cursor = self._buffer.popleft()
        self._last_event = time.monotonic()
        return event

    def next_commit(self) -> list[Event]:
        """The remaining events of the next commit, all at once (empty when stopping)."""
        if not self._fill():
            return []
        rev = self._buffer[0][0]["rev"]
        out = []
        while self._buffer and self._buffer[0][0]["rev"] == rev:
            event, self._cursor = self._buffer.popleft()
            out.append(event)
        self._last_event = time.monotonic()
        return out


def follow_raw(follow: Follow) -> Iterator[tuple[Event, Item, bytes | None]]:
    """(event, item, blob) for the files each commit added or re-annotated, read at that commit.

    Files are fetched a commit at a time (one batched read per commit); removals carry no
    item and pass by.
    """
    while True:
        commit = follow.next_commit()
        if not commit:
            return
        wanted = [e for e in commit if e["kind"] in SAMPLE_KINDS]
        if not wanted:
            continue
        ids = [e["file_id"] for e in wanted]
        view = follow.dataset.derive(query=None, as_of=commit[0]["rev"], ids=np.asarray(ids, dtype=np.int64))
        for event, (item, blob) in zip(wanted, view.fetch_raw(ids), strict=True):
            yield event, item, blob


def follow_samples(follow: Follow) -> Iterator[Sample]:
    """Samples of ``follow_raw``'s files; each carries its event under ``"event"``."""
    for event, item, blob in follow_raw(follow):
        sample = make_sample(item, blob, follow.dataset.decode)
        sample["event"] = event
        yield sample
