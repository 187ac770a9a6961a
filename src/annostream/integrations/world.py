"""Where this process stands in a training job: its rank among processes, its loader worker.

The rank and world size come from ``torch.distributed`` when a process group is
initialised, else from the ``RANK`` / ``WORLD_SIZE`` variables that torchrun and most
launchers set, else a world of one. torch is imported only when asked, so the TensorFlow
face (which takes rank and world size as arguments) never needs it.

A ``Shard`` numbers the (rank, worker) pairs of a job 0..shards-1, rank-major, so that data
dealt by ``index % shards == shard`` goes to exactly one reader.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def distributed_rank() -> tuple[int, int]:
    """This process's (rank, world size): torch.distributed when initialised, else the env."""
    from_env = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        import torch.distributed as dist
    except ImportError:  # the torch extra is not installed: only the environment can say
        return from_env
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return from_env


@dataclass(frozen=True)
class Shard:
    """One reader of a job: ``rank`` of ``world_size`` processes, ``worker`` of its loader's."""

    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1

    @property
    def shards(self) -> int:
        """How many readers the job has in all."""
        return self.world_size * max(1, self.num_workers)

    @property
    def index(self) -> int:
        """This reader's number, 0..shards-1: the workers of rank 0 first, then rank 1's."""
        return self.rank * max(1, self.num_workers) + self.worker

    def owns(self, key: int) -> bool:
        """Whether ``key`` (a file id, say) is this reader's when keys are dealt modulo shards."""
        return key % self.shards == self.index
