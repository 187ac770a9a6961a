"""Mid-epoch resume with DataLoader workers, the ecosystem's way: torchdata's StatefulDataLoader
gathers each worker's position and hands it back on resume; a plain DataLoader's main process
refuses to report a position it does not have."""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from annostream import Project


def _file_id(sample: dict[str, Any]) -> int:
    return int(sample["file"]["id"])


def _ids(batches: list[torch.Tensor]) -> list[int]:
    return [int(i) for _, ids in batches for i in ids]


def test_stateful_dataloader_with_two_workers_resumes_exactly(wire_project: Project) -> None:
    project = wire_project  # DataLoader workers: a real server
    ds = project.dataset("Default")
    every = sorted(int(i) for i in ds.ids)
    loader = StatefulDataLoader(
        ds.stream(target=_file_id, decode=None, seed=3, batch_size=4), batch_size=4, num_workers=2
    )
    first: list[torch.Tensor] = []
    for batch in loader:
        first.append(batch)
        if len(first) == 5:
            break
    saved = io.BytesIO()
    torch.save(loader.state_dict(), saved)  # it survives a checkpoint file
    del loader

    saved.seek(0)
    resumed = StatefulDataLoader(
        project.dataset("Default").stream(target=_file_id, decode=None, seed=3, batch_size=4),
        batch_size=4,
        num_workers=2,
    )
    resumed.load_state_dict(torch.load(saved, weights_only=False))
    rest = _ids(list(resumed))

    taken = _ids(first)
    assert len(taken) == 20
    assert len(rest) == len(every) - 20, "the rest of the epoch, no more, no less"
    assert sorted(taken + rest) == every, "every item exactly once across the resume"
    resumed.dataset.set_epoch(1)  # type: ignore[attr-defined]
    assert sorted(_ids(list(resumed))) == every, "the next epoch is whole again"


def test_main_process_state_with_workers_points_to_stateful_dataloader(wire_project: Project) -> None:
    project = wire_project  # DataLoader workers: a real server
    stream = project.dataset("Default").stream(target=_file_id, decode=None, seed=1)
    assert stream.state_dict()["position"] == 0  # nobody has read it: position 0 is true
    for n, _ in enumerate(DataLoader(stream, batch_size=4, num_workers=2), 1):
        if n == 5:
            break
    with pytest.raises(RuntimeError, match="StatefulDataLoader"):
        stream.state_dict()
    # Read in this process again, the count is this process's own and valid.
    for consumed, _ in enumerate(stream, 1):
        if consumed == 7:
            break
    assert stream.state_dict()["position"] == 7


def test_a_worker_state_is_not_loaded_into_the_main_process(wire_project: Project) -> None:
    project = wire_project  # DataLoader workers: a real server
    stream = project.dataset("Default").stream(target=_file_id, decode=None, seed=2, batch_size=4)
    loader = StatefulDataLoader(stream, batch_size=4, num_workers=2)
    next(iter(loader))
    state = loader.state_dict()
    workers = [w["dataset_state"] for w in state["_snapshot"]["_worker_snapshots"].values()]
    assert sorted(w["worker_position"] for w in workers) == [0, 4], "one batch, from one worker"
    worker_state = workers[0]
    with pytest.raises(ValueError, match="StatefulDataLoader"):
        project.dataset("Default").stream(target=_file_id, decode=None, seed=2).load_state_dict(worker_state)
