"""Which rows of which hyvideo (released-name) linear each diffusers linear is, derived from the weight converter.

A LoRA on a linear ``W [out, in]`` is ``delta_W = scale * B @ A`` with ``A [r, in]`` and ``B [out, r]``. The released
layout fuses linears that diffusers keeps apart (``img_attn_qkv`` = ``attn.to_q | to_k | to_v``; ``linear1`` =
``to_q | to_k | to_v | proj_mlp``) and stores some rows in another order (the final layer's modulation:
released ``[shift; scale]``, diffusers ``[scale; shift]``). All of these act on the output rows only, so a diffusers
linear is "rows ``idx`` of a released linear", and the LoRA maps as ``A_d = A`` and ``B_d = B[idx]``.

The row maps are not written out a second time here: :func:`diffusers_row_map` runs the full-weight converter
:func:`hyvideo.checkpoint.convert.official_to_diffusers_dit` on probe "weights" whose entries are their own
(module, row) ids, and reads off where each row went. Whatever the converter does, the LoRA map does too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hyvideo.checkpoint.convert import official_to_diffusers_dit
from hyvideo.utils.modules import clean_name

_ROW_BITS = 32  # probe value = module id << 32 | row; rows of one linear stay far below 2**32
# Sub-module names peft puts inside a wrapped linear; never LoRA targets themselves.
_PEFT_CHILDREN = ("base_layer", "lora_A", "lora_B", "lora_dropout", "lora_embedding_A", "lora_embedding_B",
                  "lora_magnitude_vector")


@dataclass(frozen=True)
class RowMap:
    """Where a diffusers linear lives in the released layout: ``weight_d = weight[rows]`` of ``module``."""

    module: str  # released name, e.g. "double_blocks.0.img_attn_qkv"
    rows: torch.Tensor  # [out_d] int64 row indices into the released weight


def linear_shapes(dit: nn.Module) -> dict[str, tuple[int, int]]:
    """``{released module name: (out_features, in_features)}`` for every linear layer of the DiT.

    Counts ``nn.Linear`` (and subclasses), linears already wrapped by peft (their base layer's size) and
    linear-like modules with ``in_features`` / ``out_features`` (e.g. hyvideo's ``FP8Linear``).
    Convolutions (``img_in.proj``) are not linears and are left out.
    """
    shapes = {}
    for name, module in dit.named_modules():
        name = clean_name(name)  # activation-checkpoint / compile wrappers
        if any(part in _PEFT_CHILDREN for part in name.split(".")):
            continue
        base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
        out_f, in_f = getattr(base, "out_features", None), getattr(base, "in_features", None)
        # (the attributes, not the weight's shape: a block-swapped or offloaded weight is an empty placeholder)
        if isinstance(out_f, int) and isinstance(in_f, int) and getattr(base, "weight", None) is not None:
            shapes[name] = (out_f, in_f)
    return shapes


def diffusers_row_map(shapes: dict[str, tuple[int, int]], hidden_size: int) -> dict[str, RowMap]:
    """``{diffusers module name: RowMap}`` for the released linears in ``shapes`` (see module docstring).

    Args:
        shapes: :func:`linear_shapes` of the DiT.
        hidden_size: the DiT width D (sizes the q/k/v splits of the fused linears).

    Raises:
        KeyError: a linear the converter has no diffusers name for.
    """
    names = list(shapes)
    probe = {f"{name}.weight": (torch.arange(shapes[name][0], dtype=torch.int64) | (i << _ROW_BITS))[:, None]
             for i, name in enumerate(names)}
    out = {}
    for key, value in official_to_diffusers_dit(probe, hidden_size).items():
        ids = value[:, 0]
        module_ids = (ids >> _ROW_BITS).unique()
        if module_ids.numel() != 1:  # the converter never mixes rows of two linears into one
            raise AssertionError(f"diffusers {key} takes rows from several linears: {module_ids.tolist()}")
        out[key.removesuffix(".weight")] = RowMap(names[int(module_ids[0])], ids & ((1 << _ROW_BITS) - 1))
    return out


@dataclass(frozen=True)
class ModelKeys:
    """Names a LoRA may use for one DiT: released linears, their diffusers names and kohya-flattened forms."""

    shapes: dict[str, tuple[int, int]]  # released name -> (out, in), in module order
    diffusers: dict[str, RowMap]  # diffusers name -> rows of a released linear
    flat: dict[str, str]  # "double_blocks_0_img_attn_qkv" (or a flattened diffusers name) -> dotted name

    @classmethod
    def of(cls, dit: nn.Module) -> "ModelKeys":
        """Build for ``dit`` (a meta-device DiT works: only names and shapes are read)."""
        shapes = linear_shapes(dit)
        diffusers = diffusers_row_map(shapes, dit.hidden_size)
        flat = {name.replace(".", "_"): name for name in [*diffusers, *shapes]}
        return cls(shapes, diffusers, flat)

    def locate(self, name: str) -> tuple[str, torch.Tensor | None, bool] | None:
        """``(released module, rows or None for all, is_diffusers_name)`` for a released or diffusers linear
        name; None if this DiT has no such linear."""
        if name in self.shapes:
            return name, None, False
        hit = self.diffusers.get(name)
        if hit is None:
            return None
        identity = hit.rows.numel() == self.shapes[hit.module][0] and torch.equal(
            hit.rows, torch.arange(hit.rows.numel()))
        return hit.module, None if identity else hit.rows, True

    def diffusers_parts(self, module: str) -> list[tuple[str, torch.Tensor]]:
        """The diffusers linears a released linear splits into, with their rows (diffusers' module order)."""
        return [(name, hit.rows) for name, hit in self.diffusers.items() if hit.module == module]
