"""Input embedders of the DiT: patch embedding, timestep/guidance sinusoids, pooled-text MLPs.

Parameter names follow the released checkpoint (``img_in.proj``, ``time_in.mlp.0``,
``vector_in.in_layer``, ``txt_in.c_embedder.linear_1``; spec sections 1.3-1.5).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

FREQ_EMBED_DIM = 256  # sinusoid size of every TimestepEmbedder
MAX_PERIOD = 10000.0


def timestep_embedding(t: torch.Tensor, dim: int = FREQ_EMBED_DIM, max_period: float = MAX_PERIOD) -> torch.Tensor:
    """Sinusoidal embedding ``[cos(t * f_k), sin(t * f_k)]`` with ``f_k = max_period^(-k / (dim/2))``.

    Cos comes first (diffusers ``flip_sin_to_cos=True``, no frequency shift; spec 1.4).

    Args:
        t: ``[B]`` timesteps (any float; sigma * 1000 or guidance * 1000).
        dim: output size (even).

    Returns:
        ``[B, dim]`` float32.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedder(nn.Module):
    """``mlp``: Linear(256 -> D), SiLU, Linear(D -> D) over :func:`timestep_embedding` (``time_in``, ``guidance_in``)."""

    def __init__(self, hidden_size: int, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.mlp = nn.Sequential(
            nn.Linear(FREQ_EMBED_DIM, hidden_size, **kw), nn.SiLU(), nn.Linear(hidden_size, hidden_size, **kw)
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``[B]`` -> ``[B, D]``."""
        return self.mlp(timestep_embedding(t).to(self.mlp[0].weight.dtype))


class MLPEmbedder(nn.Module):
    """``vector_in``: Linear(in -> D) ``in_layer``, SiLU, Linear(D -> D) ``out_layer`` (CLIP pooled text)."""

    def __init__(self, in_dim: int, hidden_size: int, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.in_layer = nn.Linear(in_dim, hidden_size, **kw)
        self.silu = nn.SiLU()
        self.out_layer = nn.Linear(hidden_size, hidden_size, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_dim]`` -> ``[B, D]``."""
        return self.out_layer(self.silu(self.in_layer(x)))


class TextProjection(nn.Module):
    """``txt_in.c_embedder``: Linear ``linear_1``, SiLU, Linear ``linear_2`` (pooled LLM context)."""

    def __init__(self, in_dim: int, hidden_size: int, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.linear_1 = nn.Linear(in_dim, hidden_size, **kw)
        self.act_1 = nn.SiLU()
        self.linear_2 = nn.Linear(hidden_size, hidden_size, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act_1(self.linear_1(x)))


class PatchEmbed3D(nn.Module):
    """``img_in``: Conv3d with kernel = stride = patch size, flattened t-major then h, then w (spec 1.3).

    Input ``[B, C_z, T_z, H_z, W_z]``; output ``[B, L_img, D]`` with
    ``L_img = (T_z / p_t) * (H_z / p_h) * (W_z / p_w)``.
    """

    def __init__(self, patch_size, in_channels: int, hidden_size: int, device=None, dtype=None):
        super().__init__()
        self.proj = nn.Conv3d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size,
                              device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # patchify + one GEMM with the conv weight as [D, C p_t p_h p_w]: the same map as the strided conv, but
        # the tokens come out contiguous (conv(x).flatten(2).transpose(1, 2) is a transposed view, which made
        # every later op on the image tokens slow: residual adds 7x, LayerNorm copies).
        b, c, t, h, w = x.shape
        pt, ph, pw = self.proj.kernel_size
        patches = x.reshape(b, c, t // pt, pt, h // ph, ph, w // pw, pw).permute(0, 2, 4, 6, 1, 3, 5, 7)
        return F.linear(patches.reshape(b, -1, c * pt * ph * pw), self.proj.weight.flatten(1), self.proj.bias)
