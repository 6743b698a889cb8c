"""Spatial and temporal tiled encode/decode with linear blending (inference-time memory saving).

Implements the released tiling of HV:hyvideo/vae/autoencoder_kl_causal_3d.py (``spatial_tiled_encode``,
``spatial_tiled_decode``, ``temporal_tiled_encode``, ``temporal_tiled_decode``, ``blend_v/h/t``) as generic
functions over a per-tile callable. Spec: /work/shared/spec/hunyuanvideo.md section 3.7.

With the released settings (tile 256 px / 64 frames, overlap factor 0.25):

==================  =============================  ==============================
                    spatial (per axis)             temporal
==================  =============================  ==============================
encode: input tile  256 px, stride 192 px          65 frames, stride 48 frames
encode: blend/keep  8 latents / 24 latents         4 latents / 12 (first tile 13)
decode: input tile  32 latents, stride 24          17 latents, stride 12
decode: blend/keep  64 px / 192 px                 16 frames / 48 (first tile 49)
==================  =============================  ==============================

Blending semantics (kept exactly, they matter for bit-level parity): tiles are blended *in place* in raster
order, each with its already-blended upper and left neighbours (``blend_v`` then ``blend_h``), with the
linear ramp ``prev * (1 - i / e) + cur * (i / e)``, i = 0..e-1, where the extent e is clipped to both tiles'
lengths. Temporal tiles after the first drop their first output frame (it duplicates the shared boundary
frame of the causal model). A trailing temporal tile that would hold only the boundary frame already
covered by the previous tile is skipped (HV:hyvideo/vae/temporal_tile.py ``iter_temporal_tile_ranges``;
the older release produced an empty tile there, which contributes nothing either).

The same schedule and blends are what diffusers' ``AutoencoderKLHunyuanVideo`` computes when its
``enable_tiling`` gets ``tile_sample_min_{height,width,num_frames}`` equal to ours and strides of
``tile * (1 - overlap)``; outputs agree to float rounding (tests/vae/test_vae_tiling.py). Diffusers' *default*
temporal tile (16 frames, stride 12) differs from the released one (64 frames, stride 48).

Memory: tiles are stitched as they are produced (at most two rows of spatial tiles and two temporal windows
alive), so peak memory is one tile's activations plus the output, independent of the video size.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

TileFn = Callable[[torch.Tensor], torch.Tensor]


def _ramp(extent: int, like: torch.Tensor, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights ``(1 - i / e, i / e)`` for i < e, computed in float64 and cast (as Python scalars would be)."""
    w = torch.arange(extent, dtype=torch.float64) / extent
    w_prev, w_cur = (v.to(device=like.device, dtype=like.dtype).reshape(shape) for v in (1 - w, w))
    return w_prev, w_cur


def blend(prev: torch.Tensor, cur: torch.Tensor, extent: int, dim: int) -> torch.Tensor:
    """Linearly blend the tail of ``prev`` into the head of ``cur`` along ``dim``, in place on ``cur``.

    ``cur[i] = prev[-e + i] * (1 - i / e) + cur[i] * (i / e)`` for i < e = min(extent, len(prev), len(cur)).
    ``dim`` -3/-2/-1 is the released ``blend_t`` / ``blend_v`` / ``blend_h``.

    Args:
        prev: ``[B, C, T, H, W]`` earlier (upper / left) tile.
        cur: ``[B, C, T, H, W]`` current tile; modified and returned.
        extent: blend width in output units (frames or pixels or latents).
        dim: -3 (T), -2 (H) or -1 (W).

    Returns:
        ``cur``.
    """
    e = min(prev.shape[dim], cur.shape[dim], extent)
    if e <= 0:
        return cur
    shape = [1] * cur.ndim
    shape[dim] = e
    w_prev, w_cur = _ramp(e, cur, tuple(shape))
    head = cur.narrow(dim, 0, e)
    head.copy_(prev.narrow(dim, prev.shape[dim] - e, e) * w_prev + head * w_cur)
    return cur


def spatial_tiled(
    x: torch.Tensor, fn: TileFn, tile: int, stride: int, blend_extent: int, keep: int
) -> torch.Tensor:
    """Run ``fn`` on overlapping (H, W) tiles of ``x`` and stitch the outputs with linear blends.

    Tiles start at 0, stride, 2 stride, ... along H and W (the last ones may be smaller). Each output tile is
    blended with the tile above (over ``blend_extent`` rows) and to its left (columns), and its first
    ``keep`` rows/columns are kept. Rows are stitched as they are produced, so at most two rows of tile
    outputs are alive at once. Rows and columns are concatenated with no final crop (for inputs whose
    sides are multiples of the compression ratio the result already has the exact size).

    Args:
        x: ``[B, C, T, H, W]`` input (pixels for encode, latents for decode).
        fn: the per-tile model, ``[B, C, T, h, w] -> [B, C', T', h * r, w * r]``.
        tile: input tile side.
        stride: input tile stride.
        blend_extent: blend width in output units.
        keep: output rows/columns kept per tile.

    Returns:
        ``[B, C', T', H_out, W_out]``.
    """
    out_rows: list[torch.Tensor] = []
    prev_row: list[torch.Tensor] | None = None  # only the row above is kept (bounded memory)
    for i in range(0, x.shape[-2], stride):
        row = [fn(x[:, :, :, i : i + tile, j : j + tile]) for j in range(0, x.shape[-1], stride)]
        for j, cur in enumerate(row):
            if prev_row is not None:
                blend(prev_row[j], cur, blend_extent, dim=-2)
            if j > 0:
                blend(row[j - 1], cur, blend_extent, dim=-1)
        out_rows.append(torch.cat([cur[:, :, :, :keep, :keep] for cur in row], dim=-1))
        prev_row = row
    return torch.cat(out_rows, dim=-2)


def temporal_tile_ranges(length: int, stride: int, extent: int) -> list[tuple[int, int]]:
    """``(start, end)`` of temporal tiles: starts 0, stride, ...; end = min(start + extent, length).

    A trailing tile holding only the last frame, which the previous tile already reaches, is dropped (it would
    be empty after its first output frame is removed).

    Raises:
        ValueError: ``stride`` or ``extent`` is not positive.
    """
    if stride <= 0 or extent <= 0:
        raise ValueError(f"temporal tile stride and extent must be positive, got {stride} and {extent}")
    ranges: list[tuple[int, int]] = []
    for start in range(0, length, stride):
        end = min(start + extent, length)
        if ranges and end - start <= 1 and ranges[-1][1] >= length:
            break
        ranges.append((start, end))
    return ranges


def temporal_tiled(
    x: torch.Tensor, fn: TileFn, tile: int, stride: int, blend_extent: int, keep: int, out_length: int
) -> torch.Tensor:
    """Run ``fn`` on overlapping frame windows of ``x`` and stitch the outputs along T.

    Window i covers input frames ``[i * stride, i * stride + tile)``; windows after the first drop their first
    output frame, are blended with the previous window over ``blend_extent`` frames and keep ``keep`` frames
    (the first keeps ``keep + 1``, the last all it has). The result is cropped to ``out_length`` frames.
    Windows are written into a preallocated output as they are produced: besides it, at most two window
    outputs are alive at once.

    Args:
        x: ``[B, C, T, H, W]``.
        fn: the per-window model (itself possibly spatially tiled).
        tile: input window length (``tile_min + 1``: neighbours share one boundary frame).
        stride: input window stride.
        blend_extent: blend width in output frames.
        keep: output frames kept per window after the first.
        out_length: expected output frames.

    Returns:
        ``[B, C', out_length, H', W']``.

    Raises:
        ValueError: the windows do not cover ``out_length`` frames (inconsistent tile settings).
    """
    ranges = temporal_tile_ranges(x.shape[2], stride, tile)
    out: torch.Tensor | None = None  # allocated once the first window gives C', H', W'
    prev: torch.Tensor | None = None  # only the previous window's output is kept (bounded memory)
    filled = 0
    for idx, (start, end) in enumerate(ranges):
        cur = fn(x[:, :, start:end])
        if idx > 0:
            cur = blend(prev, cur[:, :, 1:], blend_extent, dim=-3)
        else:
            out = cur.new_empty((*cur.shape[:2], out_length, *cur.shape[3:]))
        n = cur.shape[2] if idx == len(ranges) - 1 else (keep if idx > 0 else keep + 1)
        n = min(n, out_length - filled)
        out[:, :, filled : filled + n] = cur[:, :, :n]
        filled += n
        prev = cur
    if filled != out_length:
        raise ValueError(f"temporal tiles produced {filled} frames, expected {out_length} (check tile settings)")
    return out
