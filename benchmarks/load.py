"""``python -m benchmarks.load``: many streaming clients and a few writers against one server.

32 readers (by default) each stream epochs in a loop, each epoch the way the SDK reads one:
the id list pinned at a revision, then ``items:batch`` with blobs inline, batch after batch;
2 writers upload images with boxes meanwhile, each upload one commit. Everything runs for
a fixed time on one asyncio loop, one HTTP client per reader or writer (no retries: every
failure counts). Reported: request latency p50/p99 for reads and writes, items/s, errors,
and items lost or duplicated: a reader's epoch must deliver exactly the ids it pinned (an
epoch cut by the deadline, exactly its prefix), every blob hashing to its name, and every
upload a writer saw acknowledged must be in the dataset at the end, once.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from annostream import frames

BATCH = 32


@dataclass
class LoadReport:
    seconds: float
    readers: int
    writers: int
    items: int = 0
    epochs: int = 0
    uploads: int = 0
    errors: int = 0
    lost: int = 0
    duplicated: int = 0
    read_ms: list[float] = field(default_factory=list, repr=False)
    write_ms: list[float] = field(default_factory=list, repr=False)
    error_samples: list[str] = field(default_factory=list)

    @staticmethod
    def _pct(values: list[float], q: float) -> float | None:
        return round(float(np.percentile(values, q)), 2) if values else None

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("read_ms", "write_ms")}
        out.update(
            items_per_s=round(self.items / self.seconds, 1),
            read_p50_ms=self._pct(self.read_ms, 50),
            read_p99_ms=self._pct(self.read_ms, 99),
            write_p50_ms=self._pct(self.write_ms, 50),
            write_p99_ms=self._pct(self.write_ms, 99),
            read_requests=len(self.read_ms),
            write_requests=len(self.write_ms),
        )
        return out


def _error(report: LoadReport, what: str) -> None:
    report.errors += 1
    if len(report.error_samples) < 10:
        report.error_samples.append(what[:300])


async def _reader(url: str, project: str, auth: tuple[str, str], deadline: float, report: LoadReport) -> None:
    base = f"/api/v2/projects/{project}"
    async with httpx.AsyncClient(base_url=url, auth=auth, timeout=60) as client:
        while time.monotonic() < deadline:
            try:
                response = await client.get(f"{base}/datasets/Default/ids")
                response.raise_for_status()
            except httpx.HTTPError as exc:
                _error(report, f"ids: {exc!r}")
                await asyncio.sleep(0.1)
                continue
            ids = np.frombuffer(response.content, dtype="<i8").tolist()
            rev = int(response.headers["X-Revision"])
            seen: Counter[int] = Counter()
            expected: list[int] = []
            for start in range(0, len(ids), BATCH):
                if time.monotonic() >= deadline:
                    break
                batch = ids[start : start + BATCH]
                body = orjson.dumps({"ids": batch, "as_of": rev, "blobs": "inline"})
                began = time.perf_counter()
                try:
                    response = await client.post(
                        f"{base}/items:batch", content=body, headers={"Content-Type": "application/json"}
                    )
                    response.raise_for_status()
                    pairs = list(frames.decode(response.content))
                except (httpx.HTTPError, frames.Truncated) as exc:
                    _error(report, f"items:batch: {exc!r}")
                    break
                report.read_ms.append((time.perf_counter() - began) * 1000)
                expected += batch
                for item, blob in pairs:
                    sha = item["file"]["sha256"]
                    if blob is None or hashlib.sha256(blob).hexdigest() != sha:
                        _error(report, f"item {item['id']}: blob missing or not hashing to {sha}")
                    seen[item["id"]] += 1
            report.items += sum(seen.values())
            report.lost += len(set(expected) - set(seen))
            report.duplicated += sum(n - 1 for n in seen.values() if n > 1) + len(set(seen) - set(expected))
            report.epochs += 1


def _jpeg(rng: random.Random) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new(
        "RGB", (rng.randint(64, 160), rng.randint(64, 160)), tuple(rng.randrange(256) for _ in range(3))
    ).save(out, "JPEG")
    return out.getvalue()


async def _writer(
    url: str,
    project: str,
    auth: tuple[str, str],
    deadline: float,
    n: int,
    report: LoadReport,
    acked: list[int],
) -> None:
    rng = random.Random(n)
    box = {"type": "box", "label": "cat", "geometry": {"x_min": 2, "y_min": 2, "x_max": 40, "y_max": 40}}
    async with httpx.AsyncClient(base_url=url, auth=auth, timeout=60) as client:
        k = 0
        while time.monotonic() < deadline:
            form = {"instances": orjson.dumps([box, box]).decode(), "metadata": "{}"}
            began = time.perf_counter()
            try:
                response = await client.post(
                    f"/api/v2/projects/{project}/datasets/Default/files",
                    files={"file": (f"load-{n}-{k}.jpg", _jpeg(rng))},
                    data=form,
                )
                response.raise_for_status()
            except httpx.HTTPError as exc:
                body = exc.response.text if isinstance(exc, httpx.HTTPStatusError) else ""
                _error(report, f"upload: {exc!r} {body}")
                await asyncio.sleep(0.1)
                continue
            report.write_ms.append((time.perf_counter() - began) * 1000)
            acked.append(int(response.json()["id"]))
            report.uploads += 1
            k += 1


async def run_load(
    url: str,
    project: str,
    reader_key: dict[str, str],
    writer_key: dict[str, str],
    *,
    seconds: float = 60.0,
    readers: int = 32,
    writers: int = 2,
) -> LoadReport:
    """Run the load for ``seconds`` against ``url``; then check every acknowledged upload."""
    report = LoadReport(seconds=seconds, readers=readers, writers=writers)
    deadline = time.monotonic() + seconds
    acked: list[int] = []
    r_auth = (reader_key["client_id"], reader_key["client_secret"])
    w_auth = (writer_key["client_id"], writer_key["client_secret"])
    await asyncio.gather(
        *[_reader(url, project, r_auth, deadline, report) for _ in range(readers)],
        *[_writer(url, project, w_auth, deadline, n, report, acked) for n in range(writers)],
    )
    async with httpx.AsyncClient(base_url=url, auth=r_auth, timeout=60) as client:
        final = await client.get(f"/api/v2/projects/{project}/datasets/Default/ids")
    present = Counter(np.frombuffer(final.content, dtype="<i8").tolist())
    report.lost += sum(1 for fid in acked if present[fid] == 0)
    report.duplicated += sum(1 for fid in set(acked) if present[fid] > 1) + len(acked) - len(set(acked))
    return report


def main() -> None:
    from annostream.client.transports import EmbeddedTransport
    from annostream.server.launch import running_server
    from benchmarks.data import PROJECT, build_images

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--readers", type=int, default=32)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--data", type=Path, default=Path("bench-data/load"))
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "load.json")
    args = parser.parse_args()
    built = build_images(args.data, args.images)
    editor = EmbeddedTransport(built.store).create_key(PROJECT, "editor")
    with running_server(built.store) as url:
        report = asyncio.run(
            run_load(
                url,
                PROJECT,
                built.key,
                editor,
                seconds=args.seconds,
                readers=args.readers,
                writers=args.writers,
            )
        )
    summary = {**report.summary(), "images": args.images}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    if report.errors or report.lost or report.duplicated:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
