"""Several processes, one training loop: what `torchrun` and `accelerate launch` pass in the environment.

`torchrun --nproc_per_node N -m train ...` (or `python -m torch.distributed.run ...`) and
`accelerate launch --num_processes N -m train ...` both start N copies of `python -m train` with RANK,
LOCAL_RANK and WORLD_SIZE set (MASTER_ADDR/PORT for the rendezvous), so reading those is all the support
either needs. Plain torch.distributed: NCCL between GPUs, gloo between CPU processes. Without them
(WORLD_SIZE unset) everything here is a no-op and the loop runs as one process.

Who does what: every process trains on its own share of each epoch's order (`shard`) and DistributedDataParallel
averages the gradients; process 0 alone evaluates, decides, and writes the run files; the others receive its
decisions (`broadcast`) and wait for it at barriers.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

DEBUG_ENV = "FACE_TRAIN_DEBUG_SHARDS"  # a folder: each process appends what it trained on (tests only)


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        """This process's share of an epoch's order: every world-th index, from its rank on. The order is first
        padded with its own start to a multiple of the world size (as DistributedSampler does), so every
        process takes as many steps: DDP needs each backward pass on all of them. Split in batches of
        batch_size / world, rank r's step k is exactly its share of the one-process run's batch k."""
        pad = (-len(order)) % self.world
        return torch.cat([order, order[:pad]])[self.rank::self.world]

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """DDP over the parameters that require grad now (call again when that set changes: DDP fixes it
        when wrapping). One process: the module itself."""
        if self.world == 1:
            return module
        return DistributedDataParallel(module, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def all_sum(self, values: list[float]) -> list[float]:
        """Each value summed over the processes."""
        if self.world == 1:
            return list(values)
        total = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return total.tolist()

    def broadcast(self, value):
        """Process 0's `value` (any picklable object), in every process."""
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    @contextmanager
    def main_first(self):
        """Process 0 runs the block first (decoding images, computing features: it writes the caches), the others
        after it (they read them): one writer per cache file."""
        if not self.main:
            self.barrier()
        yield
        if self.main:
            self.barrier()

    @property
    def debugging(self) -> bool:
        return bool(os.environ.get(DEBUG_ENV))

    def debug_record(self, **data) -> None:
        """Append `data` as a JSON line to $FACE_TRAIN_DEBUG_SHARDS/rank{rank}.jsonl."""
        folder = Path(os.environ[DEBUG_ENV])
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"rank{self.rank}.jsonl", "a") as f:
            f.write(json.dumps(data) + "\n")

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def launched_rank() -> int:
    """This process's rank as the launcher set it (0 when not launched by one)."""
    return int(os.environ.get("RANK", 0))


def start(device: torch.device) -> Processes:
    """Join the process group the launcher set up (if any). On GPUs each process takes the GPU numbered by its
    LOCAL_RANK (its index on this machine)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world == 1:
        return Processes(device=device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    cuda = device.type == "cuda"
    dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
    return Processes(rank=dist.get_rank(), world=dist.get_world_size(), device=device)
