"""What the SDK shows while it works, by calling it: a view's first ``len`` (one query on the
server, whose size is known only when it ends) shows a spinner saying what it does, for which
view, where, and for how long; nothing at all when switched off. On both transports."""

from __future__ import annotations

import io
import re
import threading
from typing import Any

import pytest
from rich.console import Console

from annostream import Project
from annostream.client import progress


class Screen:
    """A terminal-like console that keeps all it was sent, for rich to draw on."""

    def __init__(self) -> None:
        self.file = io.StringIO()
        self.made = 0

    def console(self) -> Console:
        self.made += 1
        return Console(file=self.file, force_terminal=True, width=400, color_system=None)

    @property
    def text(self) -> str:
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.file.getvalue())


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> Screen:
    shown = Screen()
    monkeypatch.setattr(progress, "console", shown.console)
    monkeypatch.setattr(progress, "DELAY", 0.0)
    return shown


def _held_until_drawn(project: Project, monkeypatch: pytest.MonkeyPatch, name: str) -> threading.Event:
    """Make the transport's ``name`` call wait (a little) for the spinner to be on screen, so
    what is drawn is seen however fast the store answers; the call itself runs as ever."""
    real = getattr(project.transport, name)
    called = threading.Event()

    def held(*args: Any, **kwargs: Any) -> Any:
        called.set()
        for _ in range(500):
            if progress._SHOWING.locked():
                break
            threading.Event().wait(0.01)
        return real(*args, **kwargs)

    monkeypatch.setattr(project.transport, name, held)
    return called


def test_first_len_shows_what_it_does_and_for_how_long(
    project: Project, screen: Screen, monkeypatch: pytest.MonkeyPatch
) -> None:
    view = project.dataset("Default").slice("labels.cat >= 1").with_options(progress=True)
    called = _held_until_drawn(project, monkeypatch, "ids")
    named = repr(view)  # as it is before it is pinned to a revision
    n = len(view)
    assert called.is_set() and n == view.count() > 0
    where = "the server at" if project.transport.__class__.__name__ == "HttpTransport" else "the local store"
    assert f"{named}: {where}" in screen.text
    assert "is selecting its ids" in screen.text
    assert re.search(r"\d:\d\d:\d\d", screen.text)  # the time elapsed
    assert not progress._SHOWING.locked()  # gone when done
    drawn = screen.text
    assert len(view) == n and screen.text == drawn  # the second len asks nothing, shows nothing


@pytest.mark.parametrize("off", ["argument", "environment"])
def test_progress_switched_off_draws_nothing(
    project: Project, screen: Screen, monkeypatch: pytest.MonkeyPatch, off: str
) -> None:
    if off == "environment":
        monkeypatch.setenv(progress.ENV, "0")
        view = project.dataset("Default").slice("labels.dog >= 1")
    else:
        view = project.dataset("Default").slice("labels.dog >= 1").with_options(progress=False)
    called = _held_until_drawn(project, monkeypatch, "ids")
    assert len(view) > 0 and called.is_set()
    assert view.label_counts() and view.count() == len(view)
    assert screen.made == 0 and screen.text == ""


def test_one_thing_on_screen_at_a_time(screen: Screen) -> None:
    with progress.waiting("outer", True) as outer:
        for _ in range(500):
            if outer.bar is not None:
                break
            threading.Event().wait(0.01)
        assert outer.bar is not None
        with progress.reporter("inner", True) as report:
            assert report is not None
            report(1, 2)  # rich draws one live display at a time: the outer one stays
            assert report.bar is None
    with progress.reporter("after", True) as report:
        assert report is not None
        report(1, 2)
        assert report.bar is not None
    assert "outer" in screen.text and "inner" not in screen.text and "after" in screen.text
