"""Normalisation and modulation helpers of the DiT (spec section 1.6)."""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    """RMSNorm over the last dim, computed in float32 and cast back (the released QK norm).

    ``y = (x / sqrt(mean(x^2) + eps)).type_as(x) * weight``, as the released ``norm_layers.RMSNorm``. Used on
    ``[B, L, N_h, D_h]`` queries and keys with ``dim = D_h``; state-dict key ``weight`` of shape ``[dim]``.
    """

    def __init__(self, dim: int, eps: float = 1e-6, elementwise_affine: bool = True, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype)) if elementwise_affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.float()
        y = (y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x)
        return y * self.weight if self.weight is not None else y

    def reset_parameters(self) -> None:
        """The constructor's init (weight = 1), for a model built on the ``meta`` device and materialised with
        ``to_empty`` (``hyvideo.training.meta_init``)."""
        if self.weight is not None:
            nn.init.ones_(self.weight)


def layer_norm(dim: int, affine: bool = False, device=None, dtype=None) -> nn.LayerNorm:
    """LayerNorm with eps 1e-6; the DiT's ``*_norm1/2``, ``pre_norm`` and ``norm_final`` have no affine."""
    return nn.LayerNorm(dim, eps=1e-6, elementwise_affine=affine, device=device, dtype=dtype)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation ``x * (1 + scale) + shift``; x ``[B, L, D]``, shift/scale ``[B, D]`` (one fused pass)."""
    return torch.addcmul(shift.unsqueeze(1), x, 1 + scale.unsqueeze(1))


def gated_residual(residual: torch.Tensor, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``residual + x * g`` in one fused pass; residual/x ``[B, L, D]``, g ``[B, D]``."""
    return torch.addcmul(residual, x, g.unsqueeze(1))
