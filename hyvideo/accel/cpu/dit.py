"""CPU bf16 inference forms of the DiT's pieces, applied by class swap (same parameters and state-dict keys).

- :class:`FusedGeluMLP`: the MLP's GELU evaluated in the epilogue of ``fc1``'s oneDNN GEMM
  (:func:`hyvideo.accel.cpu.linear.fused_linear`);
- :class:`CPUSingleStreamBlock`: ``linear1`` as two GEMMs (qkv rows; MLP rows with the GELU fused);
- both block types: the joint q / k built by :func:`fused_norm_rope_joint` (QK RMSNorm + RoPE in one C++ pass,
  ``csrc/qk_norm_rope.cpp``, written straight into the joint ``[img; txt]`` buffer).

Each falls back to the plain math where its condition fails at call time (autograd, another dtype, kernels
not built), so a swapped model still trains and still runs in float32.
"""

from __future__ import annotations

import torch
from torch import nn

from hyvideo.accel.cpu import native
from hyvideo.accel.cpu.linear import fusable, fused_linear, gelu_of
from hyvideo.models.blocks import MMDoubleStreamBlock, MMSingleStreamBlock
from hyvideo.models.norms import RMSNorm
from hyvideo.models.rope import norm_rope_joint
from hyvideo.models.token_refiner import MLP


def fused_norm_rope_joint(parts, dtype: torch.dtype) -> torch.Tensor:
    """:func:`hyvideo.models.rope.norm_rope_joint` with each part in one C++ pass where the kernel applies.

    float32 math with one rounding to bf16 (the module path rounds after the norm, its factor and the
    rotation), written into its slice of the joint buffer (no concatenation). Applies to bf16 CPU inputs with
    bf16 RMSNorm weights, no autograd, kernels built; otherwise the plain function runs.
    """
    if not all(_fused_norm_rope_usable(norm, x, dtype) for norm, x, _ in parts):
        return norm_rope_joint(parts, dtype)
    b, _, h, d = parts[0][1].shape
    out = torch.empty(b, sum(x.shape[1] for _, x, _ in parts), h, d, dtype=dtype, device=parts[0][1].device)
    start = 0
    for norm, x, rope in parts:
        cos, sin = rope if rope is not None else (None, None)  # float32 tables, read as float32 by the kernel
        torch.ops.hyvideo_rope.qk_norm_rope(x, norm.weight, norm.eps, cos, sin, out[:, start: start + x.shape[1]])
        start += x.shape[1]
    return out


def _fused_norm_rope_usable(norm: nn.Module, x: torch.Tensor, dtype: torch.dtype) -> bool:
    if not isinstance(norm, RMSNorm) or norm.weight is None or x.device.type != "cpu":
        return False
    if x.dtype != torch.bfloat16 or dtype != torch.bfloat16 or norm.weight.dtype != torch.bfloat16:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or norm.weight.requires_grad):
        return False
    return x.stride(-1) == 1 and native.load()


class FusedGeluMLP(MLP):
    """:class:`hyvideo.models.token_refiner.MLP` with a GELU activation fused into ``fc1``'s GEMM."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(fused_linear(x, self.fc1, gelu=gelu_of(self.act)))


class CPUDoubleStreamBlock(MMDoubleStreamBlock):
    """:class:`MMDoubleStreamBlock` with :func:`fused_norm_rope_joint`."""

    norm_rope_joint = staticmethod(fused_norm_rope_joint)


class CPUSingleStreamBlock(MMSingleStreamBlock):
    """:class:`MMSingleStreamBlock` with :func:`fused_norm_rope_joint` and the MLP GELU fused into ``linear1``."""

    norm_rope_joint = staticmethod(fused_norm_rope_joint)

    def split_linear1(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        approximate = gelu_of(self.mlp_act)
        if approximate is None or not fusable(x, self.linear1):
            return super().split_linear1(x)
        d3, n = 3 * self.hidden_size, self.linear1.out_features
        return fused_linear(x, self.linear1, (0, d3)), fused_linear(x, self.linear1, (d3, n), gelu=approximate)


def use_cpu_blocks(dit: nn.Module) -> int:
    """Swap the DiT's blocks and GELU MLPs for their CPU forms (in place); returns the number swapped."""
    swaps = {MMDoubleStreamBlock: CPUDoubleStreamBlock, MMSingleStreamBlock: CPUSingleStreamBlock}
    n = 0
    for m in dit.modules():
        if type(m) in swaps:
            m.__class__, n = swaps[type(m)], n + 1
        elif type(m) is MLP and gelu_of(m.act) is not None:
            m.__class__, n = FusedGeluMLP, n + 1
    return n
