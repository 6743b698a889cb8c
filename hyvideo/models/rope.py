"""3D rotary position embedding over (t, h, w) of the patch grid (spec section 1.10).

Interleaved pairs (GPT-J / Llama-complex style), theta 256, axis split ``[t | h | w]`` inside each head
(``rope_dim_list`` = (16, 56, 56) for the released model), positions 0..n-1 on the patch grid.
Reference: HV:hyvideo/modules/posemb_layers.py (``get_nd_rotary_pos_embed``, ``apply_rotary_emb``).
"""

from __future__ import annotations

import torch
from torch import nn


def rope_freqs_1d(dim: int, pos: torch.Tensor, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables ``[S, dim]`` (float32) for positions ``pos`` ``[S]``; each angle repeated twice."""
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=pos.device)[: dim // 2] / dim))
    angles = torch.outer(pos.float(), inv)  # [S, dim/2]
    return angles.cos().repeat_interleave(2, dim=1), angles.sin().repeat_interleave(2, dim=1)


def rope_freqs_3d(
    grid_size: tuple[int, int, int], rope_dim_list, theta: float = 256.0, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE tables for a ``(T, H, W)`` patch grid, flattened t-major to match the patch tokens.

    Args:
        grid_size: ``(T_z / p_t, H_z / p_h, W_z / p_w)`` in patches.
        rope_dim_list: per-axis head dims (t, h, w); their sum is the head dim ``D_h``.
        theta: RoPE base (256 for the released model).

    Returns:
        ``(cos, sin)``, each ``[L_img, D_h]`` float32.

    Raises:
        ValueError: ``rope_dim_list`` does not have 3 even entries.
    """
    if len(rope_dim_list) != 3 or any(d % 2 for d in rope_dim_list):
        raise ValueError(f"rope_dim_list must be 3 even numbers (t, h, w), got {list(rope_dim_list)}")
    axes = [torch.arange(n, dtype=torch.float32, device=device) for n in grid_size]
    grid = torch.meshgrid(*axes, indexing="ij")  # 3 x [T, H, W]
    tables = [rope_freqs_1d(d, g.reshape(-1), theta) for d, g in zip(rope_dim_list, grid)]
    return torch.cat([c for c, _ in tables], dim=1), torch.cat([s for _, s in tables], dim=1)


class RotaryEmbedding3D(nn.Module):
    """Parameter-free module form of :func:`rope_freqs_3d` (no state-dict keys).

    ``forward(grid_size, device) -> (cos, sin)`` each ``[L_img, D_h]`` float32. A module, so that sequence
    parallelism can take this rank's rows of the tables from outside (a forward hook).
    """

    def __init__(self, rope_dim_list, theta: float = 256.0):
        super().__init__()
        self.rope_dim_list, self.theta = tuple(rope_dim_list), theta

    def forward(self, grid_size: tuple[int, int, int], device=None) -> tuple[torch.Tensor, torch.Tensor]:
        return rope_freqs_3d(grid_size, self.rope_dim_list, self.theta, device=device)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first ``L_r`` tokens of ``x`` ``[B, L, N_h, D_h]`` by tables ``[L_r, D_h]``; the rest pass.

    ``out = x * cos + rot(x) * sin`` with ``rot(x)[2m] = -x[2m+1]``, ``rot(x)[2m+1] = x[2m]``, computed in
    float32 and cast back to x's dtype (released ``apply_rotary_emb``). With ``L_r < L`` the trailing tokens
    (the text of a joint ``[img, txt]`` sequence) are returned unchanged.
    """
    n = cos.shape[0]
    xr = x[:, :n].float()
    real, imag = xr.unflatten(-1, (-1, 2)).unbind(-1)
    rotated = torch.stack([-imag, real], dim=-1).flatten(-2)
    out = (xr * cos[None, :, None] + rotated * sin[None, :, None]).type_as(x)
    return out if n == x.shape[1] else torch.cat([out, x[:, n:]], dim=1)


def norm_rope_joint(parts: list[tuple[nn.Module, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]],
                    dtype: torch.dtype) -> torch.Tensor:
    """Joint queries or keys of a block: ``cat([rope(norm(x)) for norm, x, rope in parts], dim=1)`` in dtype.

    Args:
        parts: ``(norm, x, rope)`` per token group in sequence order (image, then text): the QK norm module,
            heads ``x`` ``[B, L_i, N_h, D_h]``, and ``(cos, sin)`` tables rotating the first ``L_r <= L_i``
            tokens (:func:`apply_rope`), or None.
        dtype: output dtype (the values' dtype, as the released ``norm(q).to(v)``).

    Returns:
        ``[B, sum L_i, N_h, D_h]``.
    """
    outs = [norm(x).to(dtype) if rope is None else apply_rope(norm(x).to(dtype), *rope) for norm, x, rope in parts]
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
