"""CPU linear layers through oneDNN: GELU fused into the GEMM epilogue and pre-packed weights.

On CPU, every ``F.linear`` call re-lays the ``[D_out, D_in]`` weight for the GEMM, and in bf16 ``gelu(linear(x))``
as two ops writes and re-reads the ``[B, L, D_mlp]`` activation. ``_linear_pointwise`` (the op torch.compile's
CPU backend lowers linears to) applies the GELU while the GEMM result is still in registers, and
:class:`PackedLinear` keeps oneDNN's blocked copy of the weight between calls. Two uses:

- bf16 where oneDNN has bf16 kernels: every plain linear (packed or not), GELU fusable;
- float32 on any CPU oneDNN runs on: :class:`PackedLinear` only (what ``accel.apply`` swaps in where bf16 is
  emulated). On 2 threads of an AMD EPYC the acceptance-size DiT GEMMs ran 9 % faster than MKL's ``addmm``
  with oneDNN capped at AVX2 and 16 % faster at AVX-512 (docs/benchmarks.md).

Everywhere else (CUDA, other dtypes, autograd, FP8 / DTensor / offloaded weights) the plain PyTorch ops run, so
training and the parity tests see the usual math.
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
    """``nn.Linear`` that also keeps oneDNN-blocked copies of its bf16 / float32 weight (or blocks of it) for CPU.

    Same parameters and state-dict keys as ``nn.Linear``; made by :func:`pack_linear_weights` (in place, by
    class swap). A packed copy is rebuilt when the weight is replaced or changed in place (``weight_stamp``), so
    ``load_state_dict`` or an optimizer step never leaves a stale copy. Costs one extra copy of the weight.
    """

    def packed(self, rows: tuple[int, int] | None = None, cols: tuple[int, int] | None = None) -> torch.Tensor:
        """oneDNN-blocked copy of ``weight[rows[0]:rows[1], cols[0]:cols[1]]`` (all rows / columns for None)."""
        cache = self.__dict__.setdefault("_packed_cache", {})
        w = self.weight
        stamp = weight_stamp(w)
        hit = cache.get((rows, cols))
        if hit is None or hit[0] != stamp:
            part = _block(w, rows, cols).detach().contiguous()
            hit = cache[(rows, cols)] = (stamp, torch.ops.mkldnn._reorder_linear_weight(part))
        return hit[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_linear(x, self)


def _block(w: torch.Tensor, rows: tuple[int, int] | None, cols: tuple[int, int] | None) -> torch.Tensor:
    w = w if rows is None else w[rows[0]: rows[1]]
    return w if cols is None else w[:, cols[0]: cols[1]]


def pack_linear_weights(model: nn.Module) -> int:
    """Turn every plain ``nn.Linear`` of ``model`` into a :class:`PackedLinear` (in place); returns the count.

    Use for CPU inference in bf16 (where native) or float32: ~5-16 % faster GEMMs at the cost of one extra copy
    of the linear weights (built lazily on the first call; :func:`linear_weight_bytes` says how much). Without
    oneDNN this is a no-op returning 0.
    """
    if not _ONEDNN:
        return 0
    n = 0
    for module in model.modules():
        if _packable(module):
            module.__class__ = PackedLinear
            n += 1
    return n


def _packable(module: nn.Module) -> bool:
    """A plain ``nn.Linear`` not yet packed (:func:`plain_linear` minus :class:`PackedLinear`)."""
    return type(module) is nn.Linear and plain_linear(module)


def linear_weight_bytes(model: nn.Module) -> int:
    """Bytes of the plain ``nn.Linear`` weights of ``model``: what :func:`pack_linear_weights` would copy."""
    return sum(m.weight.numel() * m.weight.element_size() for m in model.modules() if _packable(m))


def packed_bytes(model: nn.Module) -> int:
    """Bytes held by the packed weight copies of ``model``'s :class:`PackedLinear` layers (built so far)."""
    return sum(t.numel() * t.element_size() for m in model.modules() if type(m) is PackedLinear
               for _, t in m.__dict__.get("_packed_cache", {}).values())


def plain_linear(module: nn.Module) -> bool:
    """True for an ``nn.Linear`` / :class:`PackedLinear` holding ordinary tensors (not FP8, DTensor, wrappers)."""
    return type(module) in (nn.Linear, PackedLinear) and type(module.weight) in (nn.Parameter, torch.Tensor)


def fusable(x: torch.Tensor, linear: nn.Module) -> bool:
    """True where :func:`fused_linear` runs oneDNN: CPU inference through a plain linear of x's dtype, either bf16
    on a CPU where oneDNN has bf16 kernels (on AVX2-only CPUs its bf16 reorder raises), or float32 through a
    :class:`PackedLinear` (packing is what makes oneDNN beat MKL's float32 GEMM; ``accel.apply`` opts in).

    (No autograd: the fused op has no backward.) x ``[..., D_in]``.
    """
    if not _ONEDNN or x.device.type != "cpu" or not plain_linear(linear):
        return False
    if x.dtype == torch.bfloat16:
        if not cpu_info().onednn_bf16:
            return False
    elif x.dtype != torch.float32 or type(linear) is not PackedLinear or not cpu_info().onednn_fp32_packing:
        return False
    w, b = linear.weight, linear.bias
    if w.dtype != x.dtype or (b is not None and b.dtype != x.dtype):
        return False
    return not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))


def fused_linear(x: torch.Tensor, linear: nn.Module, rows: tuple[int, int] | None = None,
                 gelu: str | None = None, cols: tuple[int, int] | None = None, bias: bool = True) -> torch.Tensor:
    """``gelu?(x @ W[rows, cols].T + b[rows])``: x ``[..., n_cols]`` -> ``[..., n_rows]`` (all for None).

    gelu: None (no activation) or the ``approximate`` mode ``"tanh"`` / ``"none"``. ``cols`` takes a block of the
    input features (so ``linear(cat([a, b], -1))`` can run as two GEMMs without the concatenation); ``bias=False``
    leaves the bias out (add it in one block only). Where :func:`fusable`, one oneDNN GEMM with the GELU
    evaluated on the float32 accumulator and rounded once (within one bf16 ulp of the unfused ops), on the
    packed weight if ``linear`` is a :class:`PackedLinear`; otherwise the plain ops.

    Raises:
        ValueError: ``gelu`` is not None, ``"tanh"`` or ``"none"``; ``rows`` / ``cols`` / ``bias=False`` with a
            non-plain linear (e.g. FP8).
    """
    if gelu is not None and gelu not in _GELU_MODES:
        raise ValueError(f"gelu must be None or one of {_GELU_MODES}, got {gelu!r}")
    if not plain_linear(linear):  # FP8 / DTensor / wrapped weights: the module's own forward
        if rows is not None or cols is not None or not bias:
            raise ValueError(f"rows= / cols= / bias=False need a plain nn.Linear, got {type(linear).__name__}")
        y = linear(x)
        return y if gelu is None else F.gelu(y, approximate=gelu)
    w, b = _block(linear.weight, rows, cols), linear.bias if bias else None
    if rows is not None and b is not None:
        b = b[rows[0]: rows[1]]
    if fusable(x, linear):
        if type(linear) is PackedLinear:
            w = linear.packed(rows, cols)
        attr, algorithm = ("none", "") if gelu is None else ("gelu", gelu)
        return torch.ops.mkldnn._linear_pointwise(x, w if w.is_mkldnn else w.contiguous(), b, attr, [], algorithm)
    y = F.linear(x, w, b)
    return y if gelu is None else F.gelu(y, approximate=gelu)


def gelu_of(module: nn.Module) -> str | None:
    """The ``approximate`` mode if ``module`` is an ``nn.GELU`` (exact type), else None."""
    return module.approximate if type(module) is nn.GELU else None
