"""FP8 (e4m3) weight storage with bf16 compute for the DiT, compatible with the released FP8 checkpoint.

Implements the released ``hyvideo/modules/fp8_optimization.py`` scheme (spec section 2.5): every ``nn.Linear``
inside ``double_blocks`` / ``single_blocks`` (modulation linears included) stores its weight as
``torch.float8_e4m3fn`` with one per-tensor scale; at forward time the weight is dequantised as
``weight.to(compute dtype) * scale`` and a normal ``F.linear`` runs. Scales are ``max|W| / 448`` (448 is the
largest e4m3 value). The released files (``*_fp8.pt`` + ``*_fp8_map.pt``) are read and written by
:mod:`hyvideo.checkpoint.fp8`; ``hyvideo.checkpoint.io.load_dit(..., fp8=True)`` builds the model with them.

State-dict keys stay those of the released model; the scale lives in a non-persistent buffer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = 448.0  # largest finite float8_e4m3fn value
_BLOCK_NAMES = ("double_blocks", "single_blocks")


class FP8Linear(nn.Module):
    """``nn.Linear`` whose weight is stored as float8_e4m3fn ``[out, in]`` with a float32 scalar scale.

    Forward: ``F.linear(x, weight.to(x.dtype) * scale, bias)``; x ``[..., in]`` -> ``[..., out]`` in x's dtype.
    The weight does not train (``requires_grad=False``); the bias keeps its dtype.
    """

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        if weight.dtype != FP8_DTYPE:
            raise ValueError(f"FP8Linear weight must be {FP8_DTYPE}, got {weight.dtype}")
        self.out_features, self.in_features = weight.shape
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = bias
        self.register_buffer("weight_scale", torch.as_tensor(scale, dtype=torch.float32).reshape(()),
                             persistent=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear, scale: float | torch.Tensor | None = None) -> "FP8Linear":
        """Quantise ``linear`` (scale = max|W| / 448 when not given; a float8 weight is kept as is)."""
        w = linear.weight.detach()
        if w.dtype == FP8_DTYPE:
            if scale is None:
                raise ValueError("a float8 weight needs its scale (from the _fp8_map.pt file)")
            q = w
        elif w.device.type == "meta":  # building before loading an FP8 file: only shapes and dtypes matter
            q = torch.empty_like(w, dtype=FP8_DTYPE)
            scale = torch.ones(()) if scale is None else scale
        else:
            if scale is None:
                scale = w.float().abs().max().clamp_min(1e-12) / FP8_MAX
            scale = torch.as_tensor(scale, dtype=torch.float32, device=w.device)
            q = (w.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
        return cls(q, scale, linear.bias)

    def dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        """The weight ``[out, in]`` in ``dtype`` (``weight * scale``, as the released forward)."""
        return self.weight.to(dtype) * self.weight_scale.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantized(x.dtype), bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, weight=float8_e4m3fn"


def _block_linears(model: nn.Module) -> list[tuple[str, nn.Module, str, nn.Linear]]:
    out = []
    for name, module in model.named_modules():
        for child_name, child in module.named_children():
            full = f"{name}.{child_name}" if name else child_name
            if type(child) is nn.Linear and any(b in full.split(".") for b in _BLOCK_NAMES):
                out.append((full, module, child_name, child))
    return out


def convert_to_fp8(model: nn.Module, fp8_map: dict[str, float | torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Swap every ``nn.Linear`` of the DiT blocks for :class:`FP8Linear`, in place.

    Args:
        model: the DiT (bf16/fp32 weights to quantise, or built on ``meta`` before loading an FP8 file).
        fp8_map: ``{module name: scale}`` (the released ``_fp8_map.pt``); None = compute from the weights.

    Returns:
        The ``{module name: scale}`` map used (float32 scalars), to save beside the weights.

    Raises:
        KeyError: ``fp8_map`` misses a block linear (the message names it).
    """
    used = {}
    for full, parent, child_name, linear in _block_linears(model):
        scale = None
        if fp8_map is not None:
            if full not in fp8_map:
                raise KeyError(f"fp8 map has no scale for {full!r} (it has {len(fp8_map)} entries)")
            scale = torch.as_tensor(fp8_map[full], dtype=torch.float32).reshape(())
        new = FP8Linear.from_linear(linear, scale)
        setattr(parent, child_name, new)
        used[full] = new.weight_scale.detach().cpu().clone()
    return used


def parameter_bytes(model: nn.Module) -> int:
    """Bytes held by the parameters (what FP8 storage halves)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())
