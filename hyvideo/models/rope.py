"""3D rotary position embedding over (t, h, w) of the patch grid (spec section 1.10).

Interleaved pairs (GPT-J / Llama-complex style), theta 256, axis split ``[t | h | w]`` inside each head
(``rope_dim_list`` = (16, 56, 56) for the released model), positions 0..n-1 on the patch grid.
"""

from __future__ import annotations

import torch


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


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of ``x`` ``[B, L, N_h, D_h]`` by tables ``[L, D_h]``; computed in float32.

    ``out = x * cos + rot(x) * sin`` with ``rot(x)[2m] = -x[2m+1]``, ``rot(x)[2m+1] = x[2m]``.
    """
    xf = x.float()
    x_even, x_odd = xf.unflatten(-1, (-1, 2)).unbind(-1)
    rotated = torch.stack([-x_odd, x_even], dim=-1).flatten(-2)
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    return (xf * cos + rotated * sin).type_as(x)
