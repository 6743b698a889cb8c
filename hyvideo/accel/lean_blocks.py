"""Lean forms of the DiT's blocks for inference on any device, applied by class swap (same state dict).

- :class:`LeanSingleStreamBlock`: ``linear1`` runs as two GEMMs over its row ranges (``[q | k | v]`` then the
  MLP rows), so the qkv activation is a ``[B, L, 3 D]`` buffer of its own instead of a view that keeps the whole
  ``[B, L, 3 D + D_mlp]`` output alive through the attention; ``linear2`` of ``cat([attn, mlp])`` runs as two
  GEMMs into one buffer, so the ``[B, L, D + D_mlp]`` concatenation is never built. Where the linears are
  oneDNN-packed (:class:`hyvideo.accel.cpu.linear.PackedLinear`, CPU float32 inference) the same splits run
  on packed row / column blocks of the weights.
- :class:`LeanDoubleStreamBlock` and both block types: :func:`lean_norm_rope_joint` builds the joint q / k in
  one buffer, rotating float32 heads by one complex multiplication (no ``stack`` / ``cat`` copies).
- :class:`LeanGeluMLP`: the GELU applied in place on ``fc1``'s output.

Same maps (float rounding aside); on CPU in float32 the acceptance-size forward takes less time and peak RSS
than diffusers' (docs/benchmarks.md). With gradients the plain forms run. FP8 linears are dequantised once per
call as their own forward does; other wrapped linears (LoRA, DTensor) keep the plain math.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hyvideo.accel.cpu.linear import fusable, fused_linear, gelu_of
from hyvideo.models.blocks import MMDoubleStreamBlock, MMSingleStreamBlock
from hyvideo.models.rope import norm_rope_joint
from hyvideo.models.token_refiner import MLP


def _grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def lean_norm_rope_joint(parts, dtype: torch.dtype) -> torch.Tensor:
    """:func:`hyvideo.models.rope.norm_rope_joint` written into one ``[B, sum L_i, N_h, D_h]`` buffer.

    For float32 CPU heads without gradients, each part's normed heads are rotated by one complex multiplication
    ``(x_2m + i x_2m+1) (cos + i sin)`` (the same products as :func:`hyvideo.models.rope.apply_rope`) straight
    into their slice of the joint buffer; otherwise (other dtypes, GPUs, where ``torch.compile`` may meet it,
    autograd) the plain function runs.
    """
    xs = [x for _, x, _ in parts]
    if dtype != torch.float32 or any(x.dtype != dtype or x.device.type != "cpu" for x in xs) or _grad(*xs):
        return norm_rope_joint(parts, dtype)
    b, _, h, d = xs[0].shape
    out = torch.empty(b, sum(x.shape[1] for x in xs), h, d, dtype=dtype, device=xs[0].device)
    start = 0
    for norm, x, rope in parts:
        y, dst, n = norm(x), out[:, start: start + x.shape[1]], 0
        if rope is not None:
            cos, sin = rope
            n = cos.shape[0]
            turn = torch.complex(cos[:, 0::2].float(), sin[:, 0::2].float())[None, :, None]
            torch.mul(torch.view_as_complex(y[:, :n].unflatten(-1, (-1, 2))), turn,
                      out=torch.view_as_complex(dst[:, :n].unflatten(-1, (-1, 2))))
        dst[:, n:].copy_(y[:, n:])
        start += x.shape[1]
    return out


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


def _act_(act: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """``act(y)``, in place on ``y`` for an ``nn.GELU`` without gradients (y is a fresh GEMM output)."""
    approximate = gelu_of(act)
    if approximate is None or _grad(y):
        return act(y)
    return torch.ops.aten.gelu_(y, approximate=approximate)


class LeanGeluMLP(MLP):
    """:class:`hyvideo.models.token_refiner.MLP` with its GELU applied in place."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(_act_(self.act, self.fc1(x)))


class LeanDoubleStreamBlock(MMDoubleStreamBlock):
    """:class:`MMDoubleStreamBlock` with :func:`lean_norm_rope_joint`."""

    norm_rope_joint = staticmethod(lean_norm_rope_joint)


class LeanSingleStreamBlock(MMSingleStreamBlock):
    """:class:`MMSingleStreamBlock` with row-split ``linear1``, concat-free ``linear2`` GEMMs and
    :func:`lean_norm_rope_joint`."""

    norm_rope_joint = staticmethod(lean_norm_rope_joint)

    def split_linear1(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if fusable(x, self.linear1):  # oneDNN (packed row blocks)
            d3, n = 3 * self.hidden_size, self.linear1.out_features
            return fused_linear(x, self.linear1, (0, d3)), _act_(self.mlp_act, fused_linear(x, self.linear1, (d3, n)))
        wb = weight_and_bias(self.linear1, x.dtype)
        if wb is None:
            return super().split_linear1(x)
        (w, b), d3 = wb, 3 * self.hidden_size
        qkv = F.linear(x, w[:d3], None if b is None else b[:d3])
        return qkv, _act_(self.mlp_act, F.linear(x, w[d3:], None if b is None else b[d3:]))

    def project_out(self, attn: torch.Tensor, mlp: torch.Tensor) -> torch.Tensor:
        d, n = attn.shape[-1], self.linear2.in_features
        if fusable(attn, self.linear2):  # oneDNN (packed column blocks), bias in the MLP block
            out = fused_linear(mlp, self.linear2, cols=(d, n))
            return out.add_(fused_linear(attn, self.linear2, cols=(0, d), bias=False))
        wb = None if torch.is_grad_enabled() else weight_and_bias(self.linear2, attn.dtype)
        if wb is None:
            return super().project_out(attn, mlp)
        w, b = wb
        out = F.linear(mlp, w[:, d:], b)
        return out.flatten(0, 1).addmm_(attn.flatten(0, 1), w[:, :d].t()).view_as(out)


def use_lean_blocks(dit: nn.Module) -> int:
    """Swap the plain blocks and GELU MLPs of ``dit`` for their lean forms (in place); returns the count."""
    swaps = {MMSingleStreamBlock: LeanSingleStreamBlock, MMDoubleStreamBlock: LeanDoubleStreamBlock}
    n = 0
    for m in dit.modules():
        if type(m) in swaps:
            m.__class__, n = swaps[type(m)], n + 1
        elif type(m) is MLP and gelu_of(m.act) is not None:
            m.__class__, n = LeanGeluMLP, n + 1
    return n
