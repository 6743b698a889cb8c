"""Activation checkpointing, per-block compile and FSDP2, applied in that order (torchtitan's contract).

The model is a plain single-device ``nn.Module``; these functions wrap or shard its repeated blocks from
outside. ``blocks_of(model)`` finds them: the DiT's ``double_blocks`` / ``single_blocks``, the VAE's
encoder/decoder ``down_blocks`` / ``up_blocks`` / ``mid_block``, the discriminator's top-level layers.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn as nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

_BLOCK_LISTS = ("double_blocks", "single_blocks", "encoder.down_blocks", "decoder.up_blocks")
_BLOCKS = ("encoder.mid_block", "decoder.mid_block")


def _get(model: nn.Module, dotted: str):
    for part in dotted.split("."):
        model = getattr(model, part, None)
        if model is None:
            return None
    return model


def blocks_of(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """``(parent, attribute)`` pairs of the model's repeated blocks (AC / compile / FSDP units)."""
    out = []
    for prefix in ("", "vae."):  # a bare model, or a training wrapper holding it as ``.vae``
        for name in _BLOCK_LISTS:
            lst = _get(model, prefix + name)
            if isinstance(lst, nn.ModuleList):
                out += [(lst, str(i)) for i in range(len(lst))]
        for name in _BLOCKS:
            parent, _, attr = (prefix + name).rpartition(".")
            if isinstance(_get(model, prefix + name), nn.Module):
                out.append((_get(model, parent), attr))
    return out


def apply_activation_checkpointing(model: nn.Module) -> nn.Module:
    """Recompute each block's activations in backward (non-reentrant checkpoint_wrapper; state-dict keys
    are unchanged because the wrapper strips its prefix)."""
    for parent, attr in blocks_of(model):
        setattr(parent, attr, checkpoint_wrapper(getattr(parent, attr)))
    return model


def apply_compile(model: nn.Module) -> nn.Module:
    """``torch.compile`` each block in place (``Module.compile``: no ``_orig_mod.`` key prefix)."""
    for parent, attr in blocks_of(model):
        getattr(parent, attr).compile()
    return model


def apply_fsdp(model: nn.Module, mesh: DeviceMesh, precision: str = "fp32",
               extra_units: tuple[nn.Module, ...] = (), fp32_inputs: tuple[str, ...] = ()) -> nn.Module:
    """FSDP2 ``fully_shard`` on each block, then on the root (params sharded on dim 0 over ``mesh``).

    Args:
        model: the module to shard in place.
        mesh: 1-D device mesh over the data(+sequence)-parallel ranks.
        precision: "bf16" computes in bf16 with fp32 master weights and fp32 gradient reduction; "fp32".
        extra_units: further submodules to shard separately (e.g. the discriminator).
        fp32_inputs: names of root ``forward`` arguments that stay as given under bf16 (the DiT's timesteps
            ``t`` and ``guidance``). FSDP2's policy would cast every floating input of the root to bf16, and
            ``t = sigma * 1000`` in bf16 has a spacing of 4 above 512, while sampling embeds fp32 ``t``. The root
            then casts the other floating inputs itself (:func:`_cast_inputs_except`).

    Returns:
        The same module (now an ``FSDPModule``); gradients are averaged over the mesh.
    """
    bf16 = precision == "bf16"
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 \
        else MixedPrecisionPolicy()
    for parent, attr in blocks_of(model):
        fully_shard(getattr(parent, attr), mesh=mesh, mp_policy=mp)
    for unit in extra_units:
        fully_shard(unit, mesh=mesh, mp_policy=mp)
    if bf16 and fp32_inputs:
        root_mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32,
                                       cast_forward_inputs=False)
        fully_shard(model, mesh=mesh, mp_policy=root_mp)
        model.register_forward_pre_hook(_cast_inputs_except(model, fp32_inputs, torch.bfloat16), with_kwargs=True)
    else:
        fully_shard(model, mesh=mesh, mp_policy=mp)
    return model


def _cast_inputs_except(model: nn.Module, keep: tuple[str, ...], dtype: torch.dtype):
    """Forward pre-hook casting the floating tensor arguments of ``model.forward`` to ``dtype``, except the
    arguments named in ``keep`` (matched by name through the signature, positional or keyword).

    Raises:
        ValueError: a name in ``keep`` is not a parameter of ``model.forward``.
    """
    sig = inspect.signature(model.forward)
    unknown = sorted(set(keep) - set(sig.parameters))
    if unknown:
        raise ValueError(f"fp32_inputs {unknown} are not arguments of {type(model).__name__}.forward "
                         f"({list(sig.parameters)})")

    def hook(module, args, kwargs):
        bound = sig.bind(*args, **kwargs)
        for name, value in bound.arguments.items():
            if name not in keep and torch.is_tensor(value) and value.is_floating_point():
                bound.arguments[name] = value.to(dtype)
        return bound.args, bound.kwargs

    return hook


def parallelize(model: nn.Module, mesh: DeviceMesh, *, engine: str = "fsdp", precision: str = "fp32",
                activation_checkpointing: bool = False, compile: bool = False,
                fp32_inputs: tuple[str, ...] = ()) -> nn.Module:
    """AC -> compile -> FSDP2 per the run config (``engine="none"`` skips sharding: single process only).

    ``fp32_inputs``: see :func:`apply_fsdp`. Works on a model built on the ``meta`` device (nothing is
    allocated; ``to_empty`` then materialises this rank's shards only).

    Raises:
        ValueError: ``engine="none"`` with more than one rank, or an engine this build does not provide.
    """
    if activation_checkpointing:
        apply_activation_checkpointing(model)
    if compile:
        apply_compile(model)
    if engine == "fsdp":
        return apply_fsdp(model, mesh, precision, fp32_inputs=fp32_inputs)
    if engine == "none":
        if mesh.size() > 1:
            raise ValueError("parallel.engine='none' cannot run on more than one rank; use 'fsdp'")
        return model
    raise ValueError(f"parallel.engine={engine!r} is not available in this build (DeepSpeed is not "
                     f"installed); use 'fsdp' (FSDP2 = ZeRO-3 semantics)")
