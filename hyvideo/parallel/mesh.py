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


def process_group_backend(device: torch.device, backend: str = "") -> str:
    """Backend string for ``init_process_group`` on ``device``.

    On CUDA the default group is ``"cpu:gloo,cuda:nccl"``: NCCL serves CUDA tensors only, so a collective on a
    CPU tensor (a logged scalar, an object broadcast, a CPU checkpoint load) would otherwise fail with "No
    backend type associated with device type cpu". ``backend="nccl"`` is widened the same way; any other
    explicit value (``"gloo"``, a full ``"dev:backend,..."`` map) is used as given.
    """
    if device.type == "cuda" and backend in ("", "nccl"):
        return "cpu:gloo,cuda:nccl"
    return backend or "gloo"


def init_distributed(sp_degree: int = 1, backend: str = "") -> ParallelEnv:
    """Initialise the default process group (torchrun env, or a 1-process group) and the SP groups.

    Args:
        sp_degree: Ulysses sequence-parallel degree.
        backend: "nccl" / "gloo" / a device map; "" = :func:`process_group_backend` of the device
            (``cpu:gloo,cuda:nccl`` when CUDA is available, else gloo).

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
        backend = process_group_backend(device, backend)
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


def mean_over_ranks(values: dict[str, torch.Tensor | float], device: torch.device) -> dict[str, torch.Tensor]:
    """Per-key mean over all ranks, as float32 0-dim tensors on ``device``, in one collective.

    The values are stacked on ``device`` (the training device: the one NCCL serves on GPU) before the
    all-reduce, so a scalar never goes to a collective as a CPU tensor, and the caller syncs with the device
    once per step (``float()`` of the result) instead of once per micro-step. No-op sum for 1 process.

    Args:
        values: name -> 0-dim tensor (any device) or Python number.
        device: where the reduction runs.

    Returns:
        name -> 0-dim float32 tensor on ``device``.
    """
    names = list(values)
    if not names:
        return {}
    x = torch.stack([torch.as_tensor(values[k], dtype=torch.float32).to(device).reshape(()) for k in names])
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(x)
        x = x / dist.get_world_size()
    return dict(zip(names, x.unbind(0)))


def configure_backends(device: torch.device) -> None:
    """Per-process speed settings on CUDA: TF32 matmuls and convolutions (fp32 master-weight GEMMs and VAE
    convs; ~10 bits of mantissa, as every large-scale trainer runs) and ``cudnn.benchmark`` (the bucket shapes
    repeat, so the autotuned conv algorithm is reused). No-op on CPU."""
    if device.type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True


def destroy() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
