"""A memory-lean form of the DiT's single-stream block for inference, applied by class swap (same state dict).

``linear1`` runs as two GEMMs over its row ranges (``[q | k | v]`` then the MLP rows), so the qkv activation is a
``[B, L, 3 D]`` buffer of its own instead of a view that keeps the whole ``[B, L, 3 D + D_mlp]`` output alive
through the attention; ``linear2`` of ``cat([attn, mlp])`` runs as two GEMMs into one buffer, so the
``[B, L, D + D_mlp]`` concatenation is never built. Same linear maps (float summation order aside); on CPU in
float32 the peak RSS of the acceptance-size forward drops below diffusers' (docs/benchmarks.md). Wrapped
linears (FP8, LoRA, DTensor) keep the plain math.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hyvideo.models.blocks import MMSingleStreamBlock


def plain_linear(module: nn.Module) -> bool:
    """True for an ``nn.Linear`` (or subclass swapped in by accel) holding ordinary tensors: its weight may be sliced."""
    return isinstance(module, nn.Linear) and type(module.weight) in (nn.Parameter, torch.Tensor) \
        and module.weight.dtype.itemsize > 1


class LeanSingleStreamBlock(MMSingleStreamBlock):
    """:class:`MMSingleStreamBlock` with row-split ``linear1`` and concat-free ``linear2`` GEMMs."""

    def split_linear1(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not plain_linear(self.linear1):
            return super().split_linear1(x)
        w, b, d3 = self.linear1.weight, self.linear1.bias, 3 * self.hidden_size
        qkv = F.linear(x, w[:d3], None if b is None else b[:d3])
        return qkv, self.mlp_act(F.linear(x, w[d3:], None if b is None else b[d3:]))

    def project_out(self, attn: torch.Tensor, mlp: torch.Tensor) -> torch.Tensor:
        if not plain_linear(self.linear2) or torch.is_grad_enabled():
            return super().project_out(attn, mlp)
        w, d = self.linear2.weight, attn.shape[-1]
        out = F.linear(mlp, w[:, d:], self.linear2.bias)
        return out.flatten(0, 1).addmm_(attn.flatten(0, 1), w[:, :d].t()).view_as(out)


def use_lean_single_blocks(dit: nn.Module) -> int:
    """Swap every plain :class:`MMSingleStreamBlock` of ``dit`` for :class:`LeanSingleStreamBlock`; returns the count."""
    n = 0
    for m in dit.modules():
        if type(m) is MMSingleStreamBlock:
            m.__class__, n = LeanSingleStreamBlock, n + 1
    return n
