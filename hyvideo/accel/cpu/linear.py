"""CPU linear layers through oneDNN: GELU fused into the GEMM epilogue and (opt-in) pre-packed weights.

On CPU in bf16, ``gelu(linear(x))`` as two ops writes and re-reads the ``[B, L, D_mlp]`` activation, and every
``F.linear`` call re-lays the ``[D_out, D_in]`` weight into oneDNN's blocked format. ``_linear_pointwise`` (the op
torch.compile's CPU backend lowers linears to) applies the GELU while the GEMM result is still in registers,
and :class:`PackedLinear` keeps the blocked copy between calls. Everywhere else (CUDA, float32, autograd, FP8 /
DTensor / offloaded weights) the plain PyTorch ops run, so training and the parity tests see the usual math.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hyvideo.accel.capability import cpu_info
from hyvideo.accel.stamp import weight_stamp

_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
_GELU_MODES = ("tanh", "none")


class PackedLinear(nn.Linear):
    """``nn.Linear`` that also keeps oneDNN-blocked copies of its bf16 weight (or row ranges of it) for CPU.

    Same parameters and state-dict keys as ``nn.Linear``; made by :func:`pack_linear_weights` (in place, by
    class swap). A packed copy is rebuilt when the weight is replaced or changed in place (``weight_stamp``), so
    ``load_state_dict`` or an optimizer step never leaves a stale copy. Costs one extra copy of the weight.
    """

    def packed(self, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """oneDNN-blocked copy of ``weight[rows[0]:rows[1]]`` (the whole weight for None)."""
        cache = self.__dict__.setdefault("_packed_cache", {})
        w = self.weight
        stamp = weight_stamp(w)
        hit = cache.get(rows)
        if hit is None or hit[0] != stamp:
            part = w if rows is None else w[rows[0]: rows[1]]
            hit = cache[rows] = (stamp, torch.ops.mkldnn._reorder_linear_weight(part.detach().contiguous()))
        return hit[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_linear(x, self)


def pack_linear_weights(model: nn.Module) -> int:
    """Turn every plain ``nn.Linear`` of ``model`` into a :class:`PackedLinear` (in place); returns the count.

    Use for CPU bf16 inference: ~5-15 % faster GEMMs at the cost of one extra copy of the linear weights
    (built lazily on the first call). Without oneDNN this is a no-op returning 0.
    """
    if not _ONEDNN:
        return 0
    n = 0
    for module in model.modules():
        if type(module) is nn.Linear and type(module.weight) in (nn.Parameter, torch.Tensor):
            module.__class__ = PackedLinear
            n += 1
    return n


def packed_bytes(model: nn.Module) -> int:
    """Bytes held by the packed weight copies of ``model``'s :class:`PackedLinear` layers (built so far)."""
    return sum(t.numel() * t.element_size() for m in model.modules() if type(m) is PackedLinear
               for _, t in m.__dict__.get("_packed_cache", {}).values())


def plain_linear(module: nn.Module) -> bool:
    """True for an ``nn.Linear`` / :class:`PackedLinear` holding ordinary tensors (not FP8, DTensor, wrappers)."""
    return type(module) in (nn.Linear, PackedLinear) and type(module.weight) in (nn.Parameter, torch.Tensor)


def fusable(x: torch.Tensor, linear: nn.Module) -> bool:
    """True where :func:`fused_linear` runs oneDNN: CPU bf16 inference through a plain linear of x's dtype, on a
    CPU where oneDNN has bf16 kernels (on AVX2-only CPUs its bf16 reorder raises).

    (No autograd: the fused op has no backward.) x ``[..., D_in]``.
    """
    if not _ONEDNN or x.device.type != "cpu" or x.dtype != torch.bfloat16 or not plain_linear(linear):
        return False
    if not cpu_info().onednn_bf16:
        return False
    w, b = linear.weight, linear.bias
    if w.dtype != x.dtype or (b is not None and b.dtype != x.dtype):
        return False
    return not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))


def fused_linear(x: torch.Tensor, linear: nn.Module, rows: tuple[int, int] | None = None,
                 gelu: str | None = None) -> torch.Tensor:
    """``gelu?(x @ W[rows].T + b[rows])``: x ``[..., D_in]`` -> ``[..., n_rows]`` (all ``D_out`` rows for None).

    gelu: None (no activation) or the ``approximate`` mode ``"tanh"`` / ``"none"``. Where :func:`fusable`, one
    oneDNN GEMM with the GELU evaluated on the float32 accumulator and rounded once (within one bf16 ulp of the
    unfused ops), on the packed weight if ``linear`` is a :class:`PackedLinear`; otherwise the plain ops.

    Raises:
        ValueError: ``gelu`` is not None, ``"tanh"`` or ``"none"``; ``rows`` with a non-plain linear (e.g. FP8).
    """
    if gelu is not None and gelu not in _GELU_MODES:
        raise ValueError(f"gelu must be None or one of {_GELU_MODES}, got {gelu!r}")
    if not plain_linear(linear):  # FP8 / DTensor / wrapped weights: the module's own forward
        if rows is not None:
            raise ValueError(f"rows= needs a plain nn.Linear, got {type(linear).__name__}")
        y = linear(x)
        return y if gelu is None else F.gelu(y, approximate=gelu)
    w, b = linear.weight, linear.bias
    if rows is not None:
        w, b = w[rows[0]: rows[1]], (None if b is None else b[rows[0]: rows[1]])
    if fusable(x, linear):
        if type(linear) is PackedLinear:
            w = linear.packed(rows)
        attr, algorithm = ("none", "") if gelu is None else ("gelu", gelu)
        return torch.ops.mkldnn._linear_pointwise(x, w if w.is_mkldnn else w.contiguous(), b, attr, [], algorithm)
    y = F.linear(x, w, b)
    return y if gelu is None else F.gelu(y, approximate=gelu)


def gelu_of(module: nn.Module) -> str | None:
    """The ``approximate`` mode if ``module`` is an ``nn.GELU`` (exact type), else None."""
    return module.approximate if type(module) is nn.GELU else None
