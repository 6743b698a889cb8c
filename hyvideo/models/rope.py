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
    """Rotate interleaved pairs of ``x`` ``[B, L, N_h, D_h]`` by tables ``[L, D_h]``.

    ``out = x * cos + rot(x) * sin`` with ``rot(x)[2m] = -x[2m+1]``, ``rot(x)[2m+1] = x[2m]``. Computed in
    float32 for float32 inputs; for bf16/fp16 inputs in that dtype with the tables rounded to it (no float32
    round trip of the [B, L, N_h, D_h] tensor; the error stays within bf16 tolerance, see tests/perf).
    """
    if x.dtype != torch.float32:
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    xf = x.float() if x.dtype == torch.float32 or cos.dtype == torch.float32 else x
    # rot(x) * sin == swap(x) * sin_signed (pairs swapped, sin negated at even slots): one pass fewer than
    # negating and re-stacking the pairs, and exact (a negation moves from x to the [L, D_h] table).
    swapped = xf.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
    sin = (sin.unflatten(-1, (-1, 2)) * sin.new_tensor([-1.0, 1.0])).flatten(-2)
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    return torch.addcmul(xf * cos, swapped, sin).type_as(x)


def extend_rope_identity(cos: torch.Tensor, sin: torch.Tensor, n_extra: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Append ``n_extra`` identity rows (cos 1, sin 0) to ``[L_img, D_h]`` tables, e.g. for the text tokens.

    Rotating text tokens by the identity leaves them exactly unchanged, so joint ``[img, txt]`` q/k can be
    rotated in one pass without slicing and concatenating.
    """
    return (torch.cat([cos, cos.new_ones(n_extra, cos.shape[1])]),
            torch.cat([sin, sin.new_zeros(n_extra, sin.shape[1])]))
