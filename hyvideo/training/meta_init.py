"""Models built on the ``meta`` device, sharded, then materialised shard by shard (torchtitan's start-up).

A 13B DiT in fp32 is 52 GB; building it on every rank, initialising it and moving it to the device before
``fully_shard`` costs that much host memory per rank at start-up. Instead (torchtitan's order):

1. build on ``meta`` (no memory), apply activation checkpointing / compile / ``fully_shard`` from outside;
2. :func:`materialize`: ``to_empty`` allocates only this rank's shards, then each parameter is initialised by
   :func:`init_sharded` or loaded by :func:`load_full_weights`.

:func:`init_sharded` is deterministic given the seed and independent of the world size: every parameter gets
the value it would have in an unsharded model, and each rank keeps its slice. The values come from the model's
own init code run on a meta "skeleton" of the same model in which one unit (an FSDP block, or the root's
remaining layers) at a time has real CPU tensors: each leaf's ``reset_parameters()`` (the constructor's init),
then the model's ``init_weights()`` if it has one (e.g. the DiT's released zero-init of gates and the final
layer), under a generator seeded by ``(seed, unit name)``. Peak extra memory: one unit in fp32 (~1.4 GB for a
13B dual-stream block), never the model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
from torch.distributed.tensor import DTensor
from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

from hyvideo.data.sampler import stable_seed
from hyvideo.parallel.fsdp import blocks_of

from .state import CheckpointError, clean_name

log = logging.getLogger(__name__)


def build_on_meta(factory: Callable[[], nn.Module]) -> nn.Module:
    """``factory()`` with every parameter on the ``meta`` device (shapes only, no memory)."""
    with torch.device("meta"):
        return factory()


def materialize(model: nn.Module, device: torch.device) -> None:
    """Allocate (uninitialised) this rank's shards of a meta-built, possibly sharded model on ``device``.

    Raises:
        ValueError: the model has buffers (their values would be lost by ``to_empty``; none of ours do).
    """
    buffers = [n for n, _ in model.named_buffers()]
    if buffers:
        raise ValueError(f"{type(model).__name__} has buffers {buffers[:4]}; to_empty would leave them garbage")
    model.to_empty(device=device)


def _units(skeleton: nn.Module) -> list[tuple[str, list[tuple[str, nn.Module]]]]:
    """``(unit name, [(leaf name, leaf)])``: one unit per repeated block, then the root's remaining leaves."""
    names = {id(m): n for n, m in skeleton.named_modules()}
    blocks = [names[id(getattr(parent, attr))] for parent, attr in blocks_of(skeleton)]
    leaves = [(n, m) for n, m in skeleton.named_modules() if any(True for _ in m.parameters(recurse=False))]
    units: dict[str, list] = {b: [] for b in blocks}
    units["<root>"] = []
    for name, leaf in leaves:
        owner = next((b for b in blocks if name == b or name.startswith(b + ".")), "<root>")
        units[owner].append((name, leaf))
    return [(u, ls) for u, ls in units.items() if ls]


@torch.no_grad()
def copy_full_into(target: torch.Tensor, full: torch.Tensor) -> None:
    """Copy a full (unsharded) tensor into ``target``: a DTensor receives its local slice, a tensor all of it."""
    if isinstance(target, DTensor):
        shape, offset = compute_local_shape_and_global_offset(full.shape, target.device_mesh, target.placements)
        target.to_local().copy_(full[tuple(slice(o, o + s) for s, o in zip(shape, offset))])
    else:
        target.copy_(full)


@torch.no_grad()
def init_sharded(model: nn.Module, reference: Callable[[], nn.Module], seed: int) -> None:
    """Initialise every parameter of ``model`` (materialised, possibly sharded) as ``reference()`` would,
    deterministically and independently of the world size (see the module docstring).

    Args:
        model: the training model after :func:`materialize` (its parameter names, without wrapper prefixes,
            are the reference's).
        reference: builds the unsharded model (called once, on ``meta``).
        seed: base seed (``run.seed``).

    Raises:
        TypeError: a leaf module with parameters but no ``reset_parameters``.
        KeyError: the reference has a parameter the model lacks.
    """
    skeleton = build_on_meta(reference)
    targets = {clean_name(n): p for n, p in model.named_parameters()}
    init_weights = getattr(skeleton, "init_weights", None)
    for unit, leaves in _units(skeleton):
        saved = {}
        for name, leaf in leaves:
            if not hasattr(leaf, "reset_parameters"):
                raise TypeError(f"{name} ({type(leaf).__name__}) has parameters but no reset_parameters()")
            saved[name] = dict(leaf._parameters)
            for pname, p in leaf._parameters.items():
                if p is not None:
                    leaf._parameters[pname] = nn.Parameter(torch.empty(p.shape, dtype=p.dtype), p.requires_grad)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(stable_seed("init", seed, unit))
            for _, leaf in leaves:
                leaf.reset_parameters()
            if init_weights is not None:
                init_weights()  # whole-model rules; on the other units' meta tensors they are no-ops
        for name, leaf in leaves:
            for pname, p in leaf._parameters.items():
                if p is not None:
                    copy_full_into(targets[f"{name}.{pname}" if name else pname], p)
            leaf._parameters.update(saved[name])


def weights_mismatch(model: nn.Module, sd: dict[str, torch.Tensor]) -> str | None:
    """A short description of key / shape differences between a full state dict and a (sharded) model."""
    own = {clean_name(k): tuple(v.shape) for k, v in model.state_dict().items()}
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    shapes = [f"{k}: file {tuple(sd[k].shape)} vs model {own[k]}" for k in sorted(set(own) & set(sd))
              if tuple(sd[k].shape) != own[k]]
    if not (missing or unexpected or shapes):
        return None
    return (f"{len(missing)} missing keys {missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}, "
            f"{len(shapes)} shape mismatches {shapes[:2]}")


def load_full_weights(model: nn.Module, read: Callable[[], dict[str, torch.Tensor]], source: str) -> None:
    """Load a full (released-layout) state dict into a materialised, possibly FSDP-sharded model without any
    rank holding the full model in fp32.

    Rank 0 alone calls ``read()`` (memory-mapped: :func:`hyvideo.training.state.read_weights` maps ``.pt`` and
    ``.safetensors`` files, so the file's pages are page cache, not process memory) and checks keys and shapes;
    then ``torch.distributed.checkpoint.state_dict.set_model_state_dict(full_state_dict=True,
    broadcast_from_rank0=True)`` broadcasts one tensor at a time and every rank copies its slice into its shard,
    casting to the shard's dtype (a bf16 release into fp32 master weights). That API rather than DCP's format
    converters (``torch_save_to_dcp``): the released file stays the single source, nothing is rewritten to disk,
    and the peak per rank is one full tensor. A model that is not sharded (one process) loads directly.

    Raises:
        CheckpointError: unreadable / unsafe file, or keys / shapes that do not match (on every rank).
    """
    rank0 = not dist.is_initialized() or dist.get_rank() == 0
    sd, error = {}, None
    if rank0:
        try:
            sd = read()
            problem = weights_mismatch(model, sd)
            error = f"weights in {source} do not match the model: {problem}" if problem else None
        except CheckpointError as e:
            error = str(e)
    if dist.is_initialized() and dist.get_world_size() > 1:
        box = [error]
        dist.broadcast_object_list(box, src=0)
        error = box[0]
    if error:
        raise CheckpointError(error)
    if not any(isinstance(p, DTensor) for p in model.parameters()):
        model.load_state_dict(sd, strict=True)  # copy_ casts each tensor
        return
    set_model_state_dict(model, sd, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True,
                                                             strict=True))
