"""The epoch plan and the job's shards: pure functions, checked without any framework."""

from __future__ import annotations

import numpy as np
import pytest

from annostream.integrations.plan import rank_positions, worker_positions
from annostream.integrations.world import Shard, distributed_rank


def test_every_key_has_exactly_one_reader() -> None:
    readers = [Shard(rank, 3, worker, 2) for rank in range(3) for worker in range(2)]
    assert sorted(s.index for s in readers) == list(range(6))
    for key in range(50):
        assert sum(s.owns(key) for s in readers) == 1, key


def test_workers_of_a_rank_cover_its_positions_in_batch_order() -> None:
    positions = rank_positions(23, seed=4, epoch=2, shuffle=True, rank=1, world_size=2, drop_last=False)
    parts = [worker_positions(positions, 3, w, 2) for w in range(2)]
    # A DataLoader takes batch k from worker k % 2: interleaving the workers' chunks gives
    # back the rank's order.
    chunks = [[p[i : i + 3] for i in range(0, len(p), 3)] for p in parts]
    interleaved = [chunks[w][k] for k in range(max(map(len, chunks))) for w in range(2) if k < len(chunks[w])]
    assert np.concatenate(interleaved).tolist() == positions.tolist()


def test_rank_comes_from_the_environment_without_a_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "5")
    assert distributed_rank() == (2, 5)
