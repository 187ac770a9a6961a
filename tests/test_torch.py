"""PyTorch face: real torch (CPU), real DataLoader workers and DDP ranks, a server on loopback."""

from __future__ import annotations

import gc
import json
import os
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image
from torch.utils.data import DataLoader

from annostream import Project, Retry
from annostream.client.transports import HttpTransport
from annostream.errors import TransportError
from annostream.integrations.common import (
    SampleError,
    classification_label,
    decode_rgb,
    detection_arrays,
)
from annostream.integrations.plan import rank_positions
from annostream.integrations.torch import AnnostreamStream, StreamLoader, collate_detection
from tests.conftest import Source


def _http(source: Source) -> Project:
    return Project(
        "coco-dataset", source.viewer["client_id"], source.viewer["client_secret"], host=source.url
    )


def _file_id(sample: dict[str, Any]) -> int:
    return int(sample["file"]["id"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- map-style ---------------------------------------------------------------------------


def test_detection_examples_match_the_samples(project: Project) -> None:
    ds = project.dataset("Default")
    torch_ds = ds.to_pytorch(target="detection", masks=True)
    assert len(torch_ds) == len(ds)
    empty = 0
    for i, sample in enumerate(ds):
        image, target = torch_ds[i]
        w, h = sample["image"].size
        assert image.dtype == torch.float32 and image.shape == (3, h, w)
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
        assert target["boxes"].dtype == torch.float32 and target["boxes"].shape[1:] == (4,)
        np.testing.assert_array_equal(target["boxes"].numpy(), sample["boxes"])
        assert target["labels"].dtype == torch.int64
        np.testing.assert_array_equal(target["labels"].numpy(), sample["label_ids"])
        assert int(target["image_id"]) == sample["file"]["id"]
        n = len(sample["boxes"])
        assert target["area"].shape == (n,) and target["iscrowd"].shape == (n,)
        assert target["masks"].shape == (n, h, w) and target["masks"].dtype == torch.uint8
        empty += n == 0
    assert empty > 0, "the fixture should hold files without instances"


def test_empty_file_gives_shaped_empty_tensors() -> None:
    sample = {
        "file": {"id": 9, "width": 5, "height": 4},
        "instances": [],
        "image": None,
        "boxes": np.zeros((0, 4), np.float32),
        "label_ids": np.zeros(0, np.int64),
    }
    arrays = detection_arrays(sample, masks=True)
    assert arrays["boxes"].shape == (0, 4) and arrays["labels"].shape == (0,)
    assert arrays["masks"].shape == (0, 4, 5)
    images, targets = collate_detection([(torch.zeros(3, 4, 5), {"boxes": torch.as_tensor(arrays["boxes"])})])
    assert len(images) == 1 and targets[0]["boxes"].shape == (0, 4)


def test_polygon_masks_are_filled() -> None:
    poly = {
        "type": "polygon",
        "bbox": [2, 2, 8, 8],
        "label_id": 1,
        "area": None,
        "iscrowd": False,
        "geometry": {"points": [[2, 2], [8, 2], [8, 8], [2, 8]]},
    }
    sample = {
        "file": {"id": 1, "width": 10, "height": 10},
        "instances": [poly],
        "image": None,
        "boxes": np.array([[2, 2, 8, 8]], np.float32),
        "label_ids": np.array([1]),
    }
    arrays = detection_arrays(sample, masks=True)
    mask = arrays["masks"][0]
    assert mask[5, 5] == 1 and mask[0, 0] == 0 and mask.sum() == 49
    assert arrays["area"][0] == 36.0


def test_classification_and_callable_targets(source: Source) -> None:
    def inst(kind: str, label_id: int, label: str) -> dict[str, Any]:
        return {"type": kind, "label_id": label_id, "label": label}

    base = {"file": {"id": 3, "name": "x.jpg"}}
    assert classification_label({**base, "instances": [inst("tag", 2, "dog"), inst("box", 1, "cat")]}) == 2
    assert classification_label({**base, "instances": [inst("box", 1, "cat")] * 2}) == 1
    assert classification_label({**base, "instances": []}) == 0
    with pytest.raises(SampleError, match=r"file 3 .*\['cat', 'dog'\]"):
        classification_label({**base, "instances": [inst("box", 1, "cat"), inst("box", 2, "dog")]})

    ds = _http(source).dataset("Default")
    image, fid = ds.to_pytorch(target=_file_id, decode="tensor")[0]
    assert fid == int(ds.ids[0]) and image.dtype == torch.float32


def test_decode_modes(source: Source) -> None:
    ds = _http(source).dataset("Default")
    raw = ds.to_pytorch(decode=None)[0]
    original = (source.images_dir / raw["file"]["name"]).read_bytes()
    assert raw["image"] == original
    pil = ds.to_pytorch(decode="pil")[0]["image"]
    assert isinstance(pil, Image.Image) and pil.mode == "RGB"
    array = ds.to_pytorch(decode="numpy")[0]["image"]
    assert array.dtype == np.uint8 and array.shape == (pil.size[1], pil.size[0], 3)
    tensor = ds.to_pytorch(decode="tensor")[0]["image"]
    assert tensor.dtype == torch.uint8 and tensor.shape == (3, pil.size[1], pil.size[0])
    with pytest.raises(ValueError, match="decode"):
        ds.to_pytorch(decode="jpeg")


def test_fast_jpeg_decoder_matches_pillow(source: Source) -> None:
    simplejpeg = pytest.importorskip("simplejpeg")
    for path in sorted(source.images_dir.glob("*.jpg"))[:10]:
        data = path.read_bytes()
        fast = simplejpeg.decode_jpeg(data, colorspace="RGB")
        pillow = np.asarray(Image.open(path).convert("RGB"))
        assert fast.shape == pillow.shape
        assert np.abs(fast.astype(int) - pillow.astype(int)).max() <= 1
        assert np.array_equal(decode_rgb(data), fast)


def test_dataloader_with_two_workers_yields_every_item_once(source: Source) -> None:
    ds = _http(source).dataset("Default")
    loader = DataLoader(
        ds.to_pytorch(target="detection"), batch_size=4, num_workers=2, collate_fn=collate_detection
    )
    for _ in range(2):  # two epochs, fresh workers each time
        seen = Counter(int(t["image_id"]) for _, targets in loader for t in targets)
        assert seen == Counter(ds.ids.tolist())


def _frozen(sample: dict[str, Any]) -> int:
    return gc.get_freeze_count()


@pytest.mark.parametrize("iterable", [False, True])
def test_loader_workers_leave_what_they_inherited_out_of_garbage_collection(
    source: Source, iterable: bool
) -> None:
    """A forked worker's collections would walk the parent's whole heap again and again."""
    ds = _http(source).dataset("Default")[:4]
    inherited = len(gc.get_objects())
    loader = DataLoader(ds.to_pytorch(_frozen, decode=None, iterable=iterable), batch_size=2, num_workers=2)
    counts = [int(n) for batch in loader for n in batch]
    assert len(counts) == 4 and min(counts) >= inherited // 2, "the inherited objects frozen in each worker"
    assert gc.get_freeze_count() == 0, "the main process's collector untouched"
    assert [_frozen(s) for s in ds.to_pytorch(_frozen, decode=None, iterable=iterable)] == [0] * 4


# --- iterable ----------------------------------------------------------------------------


def test_stream_with_two_workers_yields_every_item_once(source: Source) -> None:
    ds = _http(source).dataset("Default")
    loader = StreamLoader(ds.stream(target="detection", seed=1), batch_size=4, num_workers=2)
    seen = Counter(int(t["image_id"]) for _, targets in loader for t in targets)
    assert seen == Counter(ds.ids.tolist())


def _order(stream: AnnostreamStream) -> list[int]:
    return [int(example[1]) for example in stream]


def test_same_seed_and_epoch_same_order_other_epoch_other_order(source: Source) -> None:
    ds = _http(source).dataset("Default")
    first = _order(ds.stream(target=_file_id, decode=None, seed=7))
    again = _order(ds.stream(target=_file_id, decode=None, seed=7))
    assert first == again and sorted(first) == ds.ids.tolist()
    assert first != ds.ids.tolist()  # shuffled
    stream = ds.stream(target=_file_id, decode=None, seed=7)
    stream.set_epoch(1)
    other_epoch = _order(stream)
    assert other_epoch != first and sorted(other_epoch) == sorted(first)
    assert _order(ds.stream(target=_file_id, decode=None, seed=8)) != first
    assert _order(ds.stream(target=_file_id, decode=None, shuffle=False)) == ds.ids.tolist()


def test_ranks_get_equal_counts_padded_or_dropped() -> None:
    for n, world in [(39, 2), (10, 3), (2, 4), (0, 2)]:
        padded = [
            rank_positions(n, seed=0, epoch=1, shuffle=True, rank=r, world_size=world, drop_last=False)
            for r in range(world)
        ]
        assert len({len(p) for p in padded}) == 1
        assert set(np.concatenate(padded).tolist()) == set(range(n))
        dropped = [
            rank_positions(n, seed=0, epoch=1, shuffle=True, rank=r, world_size=world, drop_last=True)
            for r in range(world)
        ]
        assert all(len(p) == n // world for p in dropped)
        flat = np.concatenate(dropped).tolist()
        assert len(flat) == len(set(flat)) == (n // world) * world


def test_resume_mid_epoch_yields_exactly_the_rest(source: Source) -> None:
    ds = _http(source).dataset("Default")
    full = _order(ds.stream(target=_file_id, decode=None, seed=5))

    loader = StreamLoader(ds.stream(target=_file_id, decode=None, seed=5), batch_size=4, num_workers=2)
    loader.set_epoch(0)
    taken: list[int] = []
    for _, ids in loader:
        taken += ids.tolist()
        if len(taken) == 12:
            break
    state = json.loads(json.dumps(loader.state_dict()))  # it survives a checkpoint file
    assert state["position"] == 12 and taken == full[:12]

    # A new process would build a new stream; no DataLoader here so reads can be counted.
    project = _http(source)
    requested: list[int] = []
    items = project.transport.items

    def counting(p: str, ids: list[int], as_of: int | None, blobs: bool) -> Any:
        requested.extend(ids)
        return items(p, ids, as_of, blobs)

    project.transport.items = counting  # type: ignore[method-assign]
    resumed = project.dataset("Default").stream(target=_file_id, decode=None, seed=5)
    resumed.load_state_dict(state)
    resumed.set_epoch(0)  # the loop's usual call keeps the resume point of that epoch
    assert len(resumed) == len(full) - 12
    rest = _order(resumed)
    assert rest == full[12:]
    assert not set(requested) & set(taken), "resuming must not read consumed items"

    with pytest.raises(ValueError, match="seed"):
        ds.stream(seed=6).load_state_dict(state)


def _ddp_worker(rank: int, world: int, port: int, url: str, key: dict[str, str], out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        project = Project("coco-dataset", key["client_id"], key["client_secret"], host=url)
        stream = project.dataset("Default").stream(target=_file_id, decode=None, seed=11)
        assert (stream.rank, stream.world_size) == (rank, world)
        stream.set_epoch(2)
        mine = [int(fid) for _, fid in stream]
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, mine)
        Path(out, f"rank{rank}.json").write_text(json.dumps(gathered))
    finally:
        dist.destroy_process_group()


def test_two_ddp_ranks_together_see_every_item_once(source: Source, tmp_path: Path) -> None:
    mp.spawn(
        _ddp_worker, args=(2, _free_port(), source.url, source.viewer, str(tmp_path)), nprocs=2, join=True
    )
    views = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert views[0] == views[1]
    rank0, rank1 = views[0]
    assert len(rank0) == len(rank1) == 20
    assert sorted(rank0 + rank1) == sorted(_http(source).dataset("Default").ids.tolist())


def _colour(sample: dict[str, Any]) -> torch.Tensor:
    """Mean RGB of the image in [0, 1]: a target a tiny model can learn."""
    return torch.from_numpy(np.asarray(sample["image"], dtype=np.float32).mean(axis=(0, 1)) / 255.0)


def _resize(image: Image.Image) -> Image.Image:
    return image.resize((16, 16))


def test_tiny_model_loss_goes_down_on_the_stream(source: Source) -> None:
    torch.manual_seed(0)
    ds = _http(source).dataset("Default")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    loader = StreamLoader(ds.stream(_resize, target=_colour, seed=0), batch_size=8, num_workers=2)
    losses = []
    for epoch in range(3):
        loader.set_epoch(epoch)
        for images, colours in loader:
            loss = torch.nn.functional.mse_loss(model(images), colours)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
    assert len(losses) == 15
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])


# --- bad input ---------------------------------------------------------------------------


def _broken(image: Any) -> Any:
    raise ValueError("this transform is broken")


def test_failing_transform_names_the_file(source: Source) -> None:
    ds = _http(source).dataset("Default")
    first = int(ds.ids[0])
    with pytest.raises(SampleError, match=rf"transform failed on file {first} .*this transform is broken"):
        ds.to_pytorch(_broken, target="detection")[0]
    # Through worker processes too; every batch is drained, as torch waits long on workers
    # left with undelivered results.
    loader = DataLoader(ds[:4].to_pytorch(_broken, target="detection"), batch_size=2, num_workers=2)
    batches, errors = iter(loader), []
    while True:
        try:
            next(batches)
        except StopIteration:
            break
        except SampleError as exc:
            errors.append(str(exc))
    assert len(errors) == 2
    assert f"transform failed on file {first} " in errors[0]
    assert f"transform failed on file {int(ds.ids[2])} " in errors[1]
    with pytest.raises(SampleError, match=rf"file {first} "):
        next(iter(ds.stream(_broken, target="detection", shuffle=False)))


def test_unreachable_server_fails_fast_and_clearly(source: Source) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"
    start = time.monotonic()
    with pytest.raises(TransportError, match="cannot reach annostream server at"):
        Project("coco-dataset", host=dead, transport=HttpTransport(dead, retry=Retry(tries=2)))
    # A loader whose server goes away after the id list was read: the read fails, no hang.
    ds = _http(source).dataset("Default")
    torch_ds = ds.to_pytorch(target="detection")
    ds.project.transport = HttpTransport(dead, retry=Retry(tries=2))
    with pytest.raises(TransportError, match=dead):
        torch_ds[0]
    with pytest.raises(TransportError, match=dead):
        next(iter(ds.stream(target="detection")))
    assert time.monotonic() - start < 20
