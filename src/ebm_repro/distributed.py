"""Multi-process training and sampling under `torchrun` (DistributedDataParallel); one process without it.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; `from_env` reads them and joins the process group (NCCL on GPUs,
gloo on CPUs). Without them every helper here is the identity of one process, so the single-process path runs the
same code as before. README "Multi-GPU training" states the rules (global batch split, buffers, seeds, resume).
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

RANK_SEED_STRIDE = 10_007  # rank r > 0 seeds its streams with seed + r * stride (rank 0 keeps the run's seed)


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: rank of world (rank 0 of 1 without torchrun)."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, logs, samples and prints."""
        return self.rank == 0

    def rows(self, n_total: int) -> slice:
        """This rank's rows of a global batch of n_total (contiguous, in rank order)."""
        n = n_total // self.world
        return slice(self.rank * n, (self.rank + 1) * n)


SINGLE = Dist()


def from_env(device: torch.device) -> Dist:
    """The torchrun job this process belongs to (joined on first call), or SINGLE when not under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    d = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        # a long timeout: rank 0 alone runs the periodic buffer IS/FID while the others wait at the next step
        dist.init_process_group(backend, timeout=datetime.timedelta(hours=1))
    return d


def device_of(d: Dist, device: torch.device) -> torch.device:
    """One GPU per process: cuda:LOCAL_RANK under torchrun (torchrun --nproc-per-node = GPUs of the node)."""
    if d.active and device.type == "cuda":
        torch.cuda.set_device(d.local_rank)
        return torch.device("cuda", d.local_rank)
    return device


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank `rank`'s own random streams; rank 0 keeps `seed`, so one process is unchanged."""
    return seed + rank * RANK_SEED_STRIDE


def stream_seed(d: Dist, seed: int, ddp_buffer: str) -> int:
    """Seed of this rank's buffer, positives and torch streams: the run's under ddp_buffer shared, else its own."""
    return seed if ddp_buffer == "shared" else rank_seed(seed, d.rank)


def close(d: Dist) -> None:
    if d.active and dist.is_initialized():
        dist.destroy_process_group()


def all_mean(d: Dist, values: list[float]) -> list[float]:
    """The mean over ranks of each value (every rank gets it)."""
    if not d.active:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return (t / d.world).tolist()


def mean_tensors(d: Dist, ts: list[torch.Tensor]) -> list[torch.Tensor]:
    """The mean over ranks of each tensor (gradients of the log-only grad_cd / grad_kl norms)."""
    if not d.active:
        return ts
    out = []
    for t in ts:
        t = t.detach().clone()
        dist.all_reduce(t)
        out.append(t / d.world)
    return out


def gather_rows(d: Dist, x: torch.Tensor) -> torch.Tensor:
    """Every rank's x (n, ...) concatenated in rank order -> (world * n, ...) on every rank."""
    if not d.active:
        return x
    parts = [torch.empty_like(x) for _ in range(d.world)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def gather_objects(d: Dist, obj) -> list | None:
    """[rank 0's obj, rank 1's obj, ...] on rank 0, None elsewhere (picklable data: buffers, RNG states)."""
    if not d.active:
        return [obj]
    out = [None] * d.world if d.main else None
    dist.gather_object(obj, out, dst=0)
    return out


def barrier(d: Dist) -> None:
    if d.active:
        dist.barrier()
