"""The seeded synthetic label set every query benchmark loads: one generator, so annostream
and its peers (FiftyOne) hold exactly the same files, boxes, metadata and attributes.

Standard library only: the FiftyOne side imports it from its own virtual environment.
Files are yielded one at a time (a 100k-file set is never held whole); the same ``seed``
always gives the same set.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

LABELS = ["cat", "dog", "person", "car", "traffic light", "bicycle", "bird", "boat", "bus", "truck"]
WEIGHTS = [3, 2, 2, 1, 1, 1, 1, 1, 1, 1]
WEATHER = ("rain", "sun", "fog")
WIDTHS = (640, 1024, 1920)
HEIGHT = 480


@dataclass(frozen=True, slots=True)
class Box:
    """One box in pixels, with the ``weather`` attribute on about one box in twenty."""

    label: str
    x: float
    y: float
    w: float
    h: float
    weather: str | None


@dataclass(frozen=True, slots=True)
class SynthFile:
    index: int
    name: str
    width: int
    height: int
    split: str
    boxes: list[Box]

    @property
    def weathers(self) -> list[str]:
        """The file's distinct ``weather`` values (what ``attributes.weather = X`` matches)."""
        return sorted({b.weather for b in self.boxes if b.weather is not None})


def files(n_files: int, per_file: int, seed: int = 0) -> Iterator[SynthFile]:
    """``n_files`` files (1-based index) with about ``per_file`` boxes each (Gaussian, sd 3)."""
    rnd = random.Random(seed)
    for index in range(1, n_files + 1):
        width = rnd.choice(WIDTHS)
        split = "val" if rnd.random() < 0.2 else "train"
        k = max(0, round(rnd.gauss(per_file, 3)))
        boxes = []
        for label in rnd.choices(LABELS, weights=WEIGHTS, k=k):
            w, h = rnd.uniform(8, 80), rnd.uniform(8, 80)
            x, y = rnd.uniform(0, width - w), rnd.uniform(0, HEIGHT - h)
            weather = rnd.choice(WEATHER) if rnd.random() < 0.05 else None
            boxes.append(Box(label, x, y, w, h, weather))
        yield SynthFile(index, f"img_{index:07d}.jpg", width, HEIGHT, split, boxes)
