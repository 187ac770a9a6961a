"""The epoch plan: which view positions a rank, and a loader worker within it, read, in order.

A plan is computed, never communicated: every rank and worker derives its share from the
same (n, seed, epoch, world) and nothing else, so there is no coordinator and no shared
state, and a resume position is one integer. Two steps, each a pure function:

- ``rank_positions``: one permutation of the epoch, dealt round-robin to the ranks, with
  equal counts on every rank (the tail dropped, or the order padded from its start);
- ``worker_positions``: a rank's positions dealt to its loader workers in chunks of one
  batch, in the order a DataLoader collects batches from its workers.
"""

from __future__ import annotations

import numpy as np


def rank_positions(
    n: int, *, seed: int, epoch: int, shuffle: bool, rank: int, world_size: int, drop_last: bool
) -> np.ndarray:
    """View positions rank ``rank`` reads in ``epoch``, in order; the same length on every rank.

    The order is a permutation of all ``n`` positions drawn from (seed, epoch), so every
    rank derives the same one without talking to the others. Ranks take every
    ``world_size``-th entry; to keep counts equal the tail is dropped (``drop_last``) or the
    order is padded by repeating it from its start.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside a world of {world_size}")
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n, dtype=np.int64)
    per_rank = n // world_size if drop_last else -(-n // world_size)
    total = per_rank * world_size
    order = order[:total] if total <= n else np.resize(order, total)
    return order[rank::world_size]


def worker_positions(positions: np.ndarray, chunk: int, worker: int, num_workers: int) -> np.ndarray:
    """The part of ``positions`` one loader worker reads: chunks of ``chunk``, round-robin.

    A DataLoader takes batch k from worker k % num_workers, so with ``chunk`` equal to its
    batch size the loader hands out batches in exactly the order of ``positions``, and the
    number of items consumed says where to resume.
    """
    if num_workers <= 1:
        return positions
    owner = (np.arange(len(positions)) // max(1, chunk)) % num_workers
    return positions[owner == worker]
