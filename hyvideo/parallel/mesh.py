"""Process-group setup: ``torchrun`` environment -> (data-parallel x sequence-parallel) layout.

Ranks ``[g * sp, (g + 1) * sp)`` form sequence-parallel group ``g`` (they read the same samples and split
the image tokens); data-parallel rank = ``rank // sp``. FSDP shards over *all* ranks (one flat mesh).
A plain ``python train_*.py`` (no torchrun) runs as a 1-process group, so every code path is the same.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh


@dataclass
class ParallelEnv:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    sp_degree: int
    sp_group: dist.ProcessGroup | None  # None when sp_degree == 1
    mesh: DeviceMesh  # flat mesh over all ranks (FSDP)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def dp_world(self) -> int:
        return self.world // self.sp_degree

    @property
    def dp_rank(self) -> int:
        return self.rank // self.sp_degree

    @property
    def sp_rank(self) -> int:
        return self.rank % self.sp_degree


def init_distributed(sp_degree: int = 1, backend: str = "") -> ParallelEnv:
    """Initialise the default process group (torchrun env, or a 1-process group) and the SP groups.

    Args:
        sp_degree: Ulysses sequence-parallel degree.
        backend: "nccl" / "gloo"; "" = nccl when CUDA is available, else gloo.

    Raises:
        ValueError: the world size is not divisible by ``sp_degree``.
    """
    launched = "RANK" in os.environ  # torchrun (or another launcher) set the env:// variables
    world = int(os.environ.get("WORLD_SIZE", 1)) if launched else 1
    rank = int(os.environ.get("RANK", 0)) if launched else 0
    if sp_degree < 1 or world % sp_degree:
        raise ValueError(f"world size {world} is not divisible by the sequence-parallel degree {sp_degree}")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    cuda = torch.cuda.is_available() and backend != "gloo"
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = backend or ("nccl" if cuda else "gloo")
        if launched:
            dist.init_process_group(backend, device_id=device if cuda else None)
        else:  # plain `python train_*.py` or an in-process call (tests): a private 1-rank group
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    mesh = init_device_mesh(device.type, (world,))
    sp_group = None
    if sp_degree > 1:
        for g in range(world // sp_degree):  # every rank must create every group, in the same order
            group = dist.new_group(list(range(g * sp_degree, (g + 1) * sp_degree)))
            if rank // sp_degree == g:
                sp_group = group
    return ParallelEnv(rank, world, local_rank, device, sp_degree, sp_group, mesh)


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over all ranks (a copy; no-op for 1 process)."""
    x = x.detach().clone()
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(x)
        x /= dist.get_world_size()
    return x


def destroy() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
