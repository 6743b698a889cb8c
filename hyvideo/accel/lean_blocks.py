"""A memory-lean form of the DiT's single-stream block for inference, applied by class swap (same state dict).

``linear1`` runs as two GEMMs over its row ranges (``[q | k | v]`` then the MLP rows), so the qkv activation is a
``[B, L, 3 D]`` buffer of its own instead of a view that keeps the whole ``[B, L, 3 D + D_mlp]`` output alive
through the attention; ``linear2`` of ``cat([attn, mlp])`` runs as two GEMMs into one buffer, so the
``[B, L, D + D_mlp]`` concatenation is never built. Same linear maps (float summation order aside); on CPU in
float32 the peak RSS of the acceptance-size forward drops below diffusers' (docs/benchmarks.md). FP8 linears
are dequantised once per call as their own forward does; other wrapped linears (LoRA, DTensor) keep the plain
math.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hyvideo.models.blocks import MMSingleStreamBlock


def weight_and_bias(module: nn.Module, dtype: torch.dtype):
    """``(weight, bias)`` of a linear whose weight may be sliced: an ``nn.Linear`` (or a subclass swapped in by
    accel) holding ordinary tensors, or an :class:`hyvideo.accel.fp8.FP8Linear` (dequantised to ``dtype``);
    None for anything else (LoRA wrappers, DTensor shards, placeholders)."""
    from hyvideo.accel.fp8 import FP8Linear  # noqa: PLC0415

    if isinstance(module, FP8Linear):
        return module.dequantized(dtype), None if module.bias is None else module.bias.to(dtype)
    if isinstance(module, nn.Linear) and type(module.weight) in (nn.Parameter, torch.Tensor) \
            and module.weight.dtype.itemsize > 1 and module.weight.numel() > 0:
        return module.weight, module.bias
    return None


class LeanSingleStreamBlock(MMSingleStreamBlock):
    """:class:`MMSingleStreamBlock` with row-split ``linear1`` and concat-free ``linear2`` GEMMs."""

    def split_linear1(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        wb = weight_and_bias(self.linear1, x.dtype)
        if wb is None:
            return super().split_linear1(x)
        (w, b), d3 = wb, 3 * self.hidden_size
        qkv = F.linear(x, w[:d3], None if b is None else b[:d3])
        return qkv, self.mlp_act(F.linear(x, w[d3:], None if b is None else b[d3:]))

    def project_out(self, attn: torch.Tensor, mlp: torch.Tensor) -> torch.Tensor:
        wb = None if torch.is_grad_enabled() else weight_and_bias(self.linear2, attn.dtype)
        if wb is None:
            return super().project_out(attn, mlp)
        (w, b), d = wb, attn.shape[-1]
        out = F.linear(mlp, w[:, d:], b)
        return out.flatten(0, 1).addmm_(attn.flatten(0, 1), w[:, :d].t()).view_as(out)


def use_lean_single_blocks(dit: nn.Module) -> int:
    """Swap every plain :class:`MMSingleStreamBlock` of ``dit`` for :class:`LeanSingleStreamBlock`; returns the count."""
    n = 0
    for m in dit.modules():
        if type(m) is MMSingleStreamBlock:
            m.__class__, n = LeanSingleStreamBlock, n + 1
    return n
