"""One epoch of images through a DataLoader, from each source, with one decoder.

Every runner hands the loader the same thing per sample (an RGB uint8 tensor decoded by
:func:`decode`, and its annotations) with the same number of workers and batch size, and
returns images per second over the whole epoch, worker start-up included.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

try:
    import simplejpeg
except ImportError:
    simplejpeg = None

DECODER = "simplejpeg" if simplejpeg is not None else "pillow"


def decode(data: bytes) -> torch.Tensor:
    """JPEG bytes -> HWC uint8 tensor, with the fastest decoder installed (same for all)."""
    if simplejpeg is not None:
        array = simplejpeg.decode_jpeg(data, colorspace="RGB")
    else:
        import io

        from PIL import Image

        array = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return torch.from_numpy(array)


def as_list(batch: list[Any]) -> list[Any]:
    """Collate that keeps variable-size images as a list."""
    return batch


@dataclass
class Epoch:
    images: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.images / self.seconds


def _run(loader: Any, count: Callable[[Any], int] = len) -> Epoch:
    t0 = time.perf_counter()
    n = 0
    for batch in loader:
        n += count(batch)
    return Epoch(n, time.perf_counter() - t0)


def _loader(dataset: Any, workers: int, batch_size: int, **kwargs: Any) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=as_list,
        persistent_workers=False,
        **kwargs,
    )


# --- local disk -------------------------------------------------------------------------


class LocalFiles(Dataset):
    """The JPEG files in a folder, read and decoded one by one (what a user does by hand)."""

    def __init__(self, paths: list[Path], annotations: dict[str, Any]) -> None:
        self.paths = paths
        self.annotations = annotations

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Any]:
        path = self.paths[i]
        return decode(path.read_bytes()), self.annotations.get(path.name)


def local_epoch(images_dir: Path, annotations: Path, workers: int, batch_size: int) -> Epoch:
    coco = orjson.loads(annotations.read_bytes())
    by_id: dict[int, list[Any]] = {}
    for ann in coco["annotations"]:
        by_id.setdefault(ann["image_id"], []).append(ann)
    anns = {img["file_name"]: by_id.get(img["id"], []) for img in coco["images"]}
    paths = sorted(images_dir.glob("*.jpg"))
    return _run(_loader(LocalFiles(paths, anns), workers, batch_size))


# --- annostream -------------------------------------------------------------------------


def _sample_image(sample: Any) -> tuple[torch.Tensor, Any]:
    """The bench transform: decode the raw bytes the SDK handed on (``decode=None``)."""
    return decode(sample["image"]), sample["boxes"]


def ours_epoch(url: str, project: str, key: dict[str, Any], workers: int, batch_size: int) -> Epoch:
    from annostream import Project

    proj = Project(project, key["client_id"], key["client_secret"], host=url)
    ds = proj.dataset("Default")
    torch_ds = ds.to_pytorch(transform=_sample_image, decode=None, iterable=True, shuffle=False)
    return _run(_loader(torch_ds, workers, batch_size))


# --- the official Diffgram SDK ----------------------------------------------------------


def _diffgram_sample(sample: dict[str, Any]) -> tuple[Any, Any]:
    return sample.get("image"), sample.get("x_min_list")


def diffgram_epoch(
    url: str, project: str, key: dict[str, Any], workers: int, batch_size: int, limit: int
) -> Epoch:
    """The SDK's own ``to_pytorch`` (per-file requests, its own image download and decoder)."""
    from diffgram import Project as DiffgramProject

    proj = DiffgramProject(
        project_string_id=project, client_id=key["client_id"], client_secret=key["client_secret"], host=url
    )
    directory = proj.directory.get(name="Default")
    torch_ds = directory.to_pytorch(transform=_diffgram_sample)
    torch_ds.diffgram_file_id_list = torch_ds.diffgram_file_id_list[:limit]
    return _run(_loader(torch_ds, workers, batch_size))


# --- WebDataset over HTTP -----------------------------------------------------------------


def write_wds_shards(images_dir: Path, annotations: Path, out: Path, shards: int) -> list[str]:
    """Tar shards (``.jpg`` + ``.json`` per sample), as a WebDataset user would prepare."""
    import webdataset as wds

    coco = orjson.loads(annotations.read_bytes())
    by_id: dict[int, list[Any]] = {}
    for ann in coco["annotations"]:
        by_id.setdefault(ann["image_id"], []).append(ann)
    out.mkdir(parents=True, exist_ok=True)
    images = coco["images"]
    names = []
    per = -(-len(images) // shards)
    for s in range(shards):
        name = f"shard-{s:04d}.tar"
        with wds.TarWriter(str(out / name)) as sink:
            for img in images[s * per : (s + 1) * per]:
                sink.write(
                    {
                        "__key__": Path(img["file_name"]).stem,
                        "jpg": (images_dir / img["file_name"]).read_bytes(),
                        "json": orjson.dumps(by_id.get(img["id"], [])),
                    }
                )
        names.append(name)
    return names


@contextmanager
def static_server(folder: Path) -> Iterator[str]:
    """``python -m http.server`` on loopback over ``folder``."""
    from annostream.server.launch import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import httpx

        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1.0)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _wds_sample(sample: dict[str, Any]) -> tuple[torch.Tensor, Any]:
    return decode(sample["jpg"]), orjson.loads(sample["json"])


def wds_epoch(base_url: str, shards: list[str], workers: int, batch_size: int) -> Epoch:
    import webdataset as wds

    urls = [f"{base_url}/{name}" for name in shards]
    dataset = wds.WebDataset(
        urls, shardshuffle=False, nodesplitter=wds.single_node_only, empty_check=False
    ).map(_wds_sample)
    return _run(_loader(dataset, workers, batch_size))


# --- MosaicML Streaming (MDS) -------------------------------------------------------------


def _import_streaming() -> Any:
    """``streaming``, whose package init imports its torchvision helpers eagerly.

    torchvision is not installed here (it would pull another torch build); the bench uses
    none of those helpers, so an empty placeholder module satisfies the import.
    """
    try:
        import torchvision  # noqa: F401
    except ImportError:
        for name in (
            "torchvision",
            "torchvision.datasets",
            "torchvision.transforms",
            "torchvision.transforms.functional",
        ):
            module = types.ModuleType(name)
            module.__spec__ = ModuleSpec(name, None)
            sys.modules[name] = module
        sys.modules["torchvision.datasets"].VisionDataset = object  # type: ignore[attr-defined]
        sys.modules["torchvision.datasets"].CIFAR10 = object  # type: ignore[attr-defined]
        sys.modules["torchvision.transforms.functional"].to_tensor = None  # type: ignore[attr-defined]
    import streaming

    return streaming


def write_mds_shards(images_dir: Path, annotations: Path, out: Path) -> None:
    streaming = _import_streaming()
    coco = orjson.loads(annotations.read_bytes())
    by_id: dict[int, list[Any]] = {}
    for ann in coco["annotations"]:
        by_id.setdefault(ann["image_id"], []).append(ann)
    with streaming.MDSWriter(
        out=str(out), columns={"jpg": "bytes", "json": "json"}, size_limit=1 << 25
    ) as writer:
        for img in coco["images"]:
            writer.write(
                {"jpg": (images_dir / img["file_name"]).read_bytes(), "json": by_id.get(img["id"], [])}
            )


class _Mds(IterableDataset):
    """Decode MDS samples with the bench decoder (StreamingDataset is built per process)."""

    def __init__(self, remote: str, local: str, batch_size: int) -> None:
        self.remote, self.local, self.batch_size = remote, local, batch_size
        self.inner = _import_streaming().StreamingDataset(
            remote=remote, local=local, shuffle=False, batch_size=batch_size
        )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, Any]]:
        for sample in self.inner:
            yield decode(sample["jpg"]), sample["json"]


def mds_epoch(remote: Path, workers: int, batch_size: int) -> Epoch:
    streaming = _import_streaming()
    local = tempfile.mkdtemp(prefix="mds-cache-")
    try:
        streaming.base.util.clean_stale_shared_memory()
        return _run(_loader(_Mds(str(remote), local, batch_size), workers, batch_size))
    finally:
        shutil.rmtree(local, ignore_errors=True)


# --- LitData (its optimize output, read by StreamingDataset) --------------------------------


def _litdata_sample(item: tuple[str, bytes]) -> dict[str, bytes]:
    """One LitData sample: the JPEG's bytes untouched and its annotations as JSON bytes
    (LitData flattens nested values into leaves, which must keep one shape per sample)."""
    path, annotations = item
    return {"jpg": Path(path).read_bytes(), "json": annotations}


def write_litdata_chunks(images_dir: Path, annotations: Path, out: Path) -> None:
    """LitData's ``optimize`` output of the JPEGs. ``optimize`` forces the process-wide
    multiprocessing start method to spawn; the one in force before is put back, or every later
    DataLoader in the run (every source's) would start its workers by spawning."""
    import litdata

    coco = orjson.loads(annotations.read_bytes())
    by_id: dict[int, list[Any]] = {}
    for ann in coco["annotations"]:
        by_id.setdefault(ann["image_id"], []).append(ann)
    inputs = [
        (str(images_dir / img["file_name"]), orjson.dumps(by_id.get(img["id"], []))) for img in coco["images"]
    ]
    # Spawned workers would pickle each dataset (the Diffgram SDK's holds a thread pool and
    # cannot be pickled; MDS workers would lose the torchvision stand-in).
    method = multiprocessing.get_start_method(allow_none=True)
    try:
        litdata.optimize(
            fn=_litdata_sample,
            inputs=inputs,
            output_dir=str(out),
            chunk_bytes="32MB",
            num_workers=1,
            mode="overwrite",
        )
    finally:
        multiprocessing.set_start_method(method, force=True)


def _litdata_decoded(sample: dict[str, bytes]) -> tuple[torch.Tensor, Any]:
    return decode(sample["jpg"]), orjson.loads(sample["json"])


def litdata_epoch(
    input_dir: str, workers: int, batch_size: int, storage_options: dict[str, Any] | None = None
) -> Epoch:
    """One epoch through LitData's StreamingDataset and its own StreamingDataLoader (its
    documented pairing), each sample decoded with the bench decoder. ``input_dir`` is a local
    folder or an ``s3://`` URL; ``storage_options`` go to its boto3 client (an endpoint)."""
    import litdata

    if str((storage_options or {}).get("endpoint_url", "")).startswith("http://"):
        _litdata_allow_http()
    cache = tempfile.mkdtemp(prefix="litdata-cache-")
    try:
        dataset = litdata.StreamingDataset(
            input_dir=input_dir,
            cache_dir=cache,
            shuffle=False,
            transform=_litdata_decoded,
            storage_options=storage_options or {},
        )
        loader = litdata.StreamingDataLoader(
            dataset, batch_size=batch_size, num_workers=workers, collate_fn=as_list
        )
        return _run(loader)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _litdata_allow_http() -> None:
    """LitData (0.2.76) fetches chunks through obstore with fixed client options that lack
    ``allow_http``, so a plain-HTTP endpoint (moto on loopback) fails with "builder error";
    its workers are forked, so adding the option here reaches them."""
    from litdata.streaming import downloader

    downloader._OBSTORE_CLIENT_OPTIONS = {**downloader._OBSTORE_CLIENT_OPTIONS, "allow_http": True}


def litdata_s3_options(endpoint_url: str, key_id: str, secret: str, region: str) -> dict[str, Any]:
    """LitData's ``storage_options`` for an S3-compatible endpoint (passed to boto3's client)."""
    return {
        "endpoint_url": endpoint_url,
        "aws_access_key_id": key_id,
        "aws_secret_access_key": secret,
        "region_name": region,
    }


# --- Deep Lake 4 (a Bytes column of the JPEGs, read through its PyTorch dataset) ------------


def write_deeplake(
    images_dir: Path, annotations: Path, url: str, creds: dict[str, str] | None = None
) -> None:
    """The JPEGs' bytes untouched and their annotations as JSON text, appended 256 rows at a
    time and committed; ``url`` is ``file://...`` or ``s3://...`` (``creds`` with its endpoint)."""
    import deeplake

    coco = orjson.loads(annotations.read_bytes())
    by_id: dict[int, list[Any]] = {}
    for ann in coco["annotations"]:
        by_id.setdefault(ann["image_id"], []).append(ann)
    ds = deeplake.create(url, creds=creds or {})
    ds.add_column("jpg", deeplake.types.Bytes())
    ds.add_column("json", deeplake.types.Text())
    images = coco["images"]
    for start in range(0, len(images), 256):
        part = images[start : start + 256]
        ds.append(
            {
                "jpg": [(images_dir / img["file_name"]).read_bytes() for img in part],
                "json": [orjson.dumps(by_id.get(img["id"], [])).decode() for img in part],
            }
        )
    ds.commit()


def _deeplake_decoded(row: Any) -> tuple[torch.Tensor, Any]:
    return decode(row["jpg"]), orjson.loads(row["json"])


def deeplake_epoch(url: str, workers: int, batch_size: int, creds: dict[str, str] | None = None) -> Epoch:
    """One epoch through Deep Lake's ``ds.pytorch()`` (its documented DataLoader adapter),
    each row decoded with the bench decoder."""
    import deeplake

    ds = deeplake.open_read_only(url, creds=creds or {})
    return _run(_loader(ds.pytorch(transform=_deeplake_decoded), workers, batch_size))


def deeplake_s3_creds(endpoint_url: str, key_id: str, secret: str, region: str) -> dict[str, str]:
    """Deep Lake's ``creds`` for an S3-compatible endpoint."""
    return {
        "endpoint_url": endpoint_url,
        "aws_access_key_id": key_id,
        "aws_secret_access_key": secret,
        "aws_region": region,
    }


# --- pinning: the client on one core, every server and delay line on another ------------------


def _pin_process(proc: Any, cpus: set[int]) -> dict[int, set[int]]:
    """Pin every thread of ``proc`` (a process's affinity call moves only its main thread);
    returns what each thread had."""
    saved = {}
    for thread in proc.threads():
        try:
            saved[thread.id] = os.sched_getaffinity(thread.id)
            os.sched_setaffinity(thread.id, cpus)
        except (ProcessLookupError, PermissionError):
            continue
    return saved


@contextmanager
def pinned(on: bool, others: Iterable[Any] = ()) -> Iterator[bool]:
    """With ``on`` (and two cores or more): this process, hence the DataLoader workers it
    starts, on the first core it may use, and every process it started before (servers,
    delay proxies), with ``others`` (``psutil.Process``es it did not start, as PostgreSQL's),
    on the second. Yields whether it pinned. On exit every thread of those processes, and of
    the processes and threads they started meanwhile (which inherited the pin), gets back what
    it had (a new one: every core this process had)."""
    import psutil

    cpus = sorted(os.sched_getaffinity(0))
    if not on or len(cpus) < 2:
        yield False
        return
    me = psutil.Process()
    pinned_here = [*me.children(recursive=True), *others]
    saved: dict[int, set[int]] = {}
    for proc in pinned_here:
        try:
            saved.update(_pin_process(proc, {cpus[1]}))
        except psutil.NoSuchProcess:
            continue
    saved.update(_pin_process(me, {cpus[0]}))
    try:
        yield True
    finally:
        everyone = {me, *pinned_here}
        for proc in list(everyone):
            try:
                everyone.update(proc.children(recursive=True))
            except psutil.NoSuchProcess:
                continue
        for proc in everyone:
            try:
                threads = proc.threads()
            except psutil.NoSuchProcess:
                continue
            for thread in threads:
                try:
                    os.sched_setaffinity(thread.id, saved.get(thread.id, set(cpus)))
                except (ProcessLookupError, PermissionError):
                    continue
