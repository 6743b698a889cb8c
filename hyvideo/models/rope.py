"""3D rotary position embedding over (t, h, w) of the patch grid (spec section 1.10).

Interleaved pairs (GPT-J / Llama-complex style), theta 256, axis split ``[t | h | w]`` inside each head
(``rope_dim_list`` = (16, 56, 56) for the released model), positions 0..n-1 on the patch grid.
"""

from __future__ import annotations

import torch
from torch import nn

from hyvideo.models.norms import RMSNorm
from hyvideo.ops import native


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


def norm_rope_joint(parts: list[tuple[nn.Module, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]],
                    dtype: torch.dtype) -> torch.Tensor:
    """Joint queries or keys of a block: ``cat([rope(norm(x)) for norm, x, rope in parts], dim=1)`` in dtype.

    Args:
        parts: ``(norm, x, rope)`` per token group in sequence order (e.g. image then text): the QK norm module,
            heads ``x`` ``[B, L_i, N_h, D_h]``, and ``(cos, sin)`` tables ``[L_r, D_h]`` rotating the first
            ``L_r <= L_i`` tokens (the rest stay unrotated), or None.
        dtype: output dtype (the values' dtype).

    Returns:
        ``[B, sum L_i, N_h, D_h]``. On CPU in bfloat16 with RMSNorm and hyvideo's C++ kernels
        (:mod:`hyvideo.ops.native`, inference only) each part is one pass (``csrc/qk_norm_rope.cpp``) written
        into its slice of the joint buffer: float32 math with one rounding, where the module path rounds after
        the norm, its factor and the rotation. Otherwise :class:`hyvideo.models.norms.RMSNorm` (or the given
        norm) and :func:`apply_rope`, then a concatenation.
    """
    if all(_fused_norm_rope_usable(norm, x, dtype) for norm, x, _ in parts):
        b, _, h, d = parts[0][1].shape
        out = torch.empty(b, sum(x.shape[1] for _, x, _ in parts), h, d, dtype=dtype, device=parts[0][1].device)
        start = 0
        for norm, x, rope in parts:
            cos, sin = rope if rope is not None else (None, None)
            torch.ops.hyvideo_rope.qk_norm_rope(x, norm.weight, norm.eps, cos, sin, out[:, start: start + x.shape[1]])
            start += x.shape[1]
        return out
    outs = []
    for norm, x, rope in parts:
        y = norm(x).to(dtype)
        if rope is not None:
            n_rot = rope[0].shape[0]
            y = apply_rope(y, *rope) if n_rot == y.shape[1] else torch.cat([apply_rope(y[:, :n_rot], *rope),
                                                                            y[:, n_rot:]], 1)
        outs.append(y)
    return outs[0] if len(outs) == 1 else torch.cat(outs, 1)


def _fused_norm_rope_usable(norm: nn.Module, x: torch.Tensor, dtype: torch.dtype) -> bool:
    if not isinstance(norm, RMSNorm) or norm.weight is None or x.device.type != "cpu":
        return False
    if x.dtype != torch.bfloat16 or dtype != torch.bfloat16 or norm.weight.dtype != torch.bfloat16:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or norm.weight.requires_grad):
        return False
    return x.stride(-1) == 1 and native.load()
