"""Tiled encode/decode: equals diffusers' tiled VAE with the same tiles; released defaults; bounded tiles."""

from __future__ import annotations

import pytest
import torch

from hyvideo.vae.autoencoder import AutoencoderKLCausal3D
from hyvideo.vae.tiling import blend, temporal_tile_ranges
from vae_twin import TINY_CONFIG, diffusers_twin

ATOL = 1e-4


def _enable_same_tiling(ours: AutoencoderKLCausal3D, twin) -> None:
    """Configure diffusers with our tile sizes and strides (its blend widths are tile - stride)."""
    ours.enable_tiling()
    st = ours.tile_settings()
    twin.enable_tiling(
        tile_sample_min_height=ours.tile_sample_min_size,
        tile_sample_min_width=ours.tile_sample_min_size,
        tile_sample_min_num_frames=ours.tile_sample_min_tsize,
        tile_sample_stride_height=st["encode_spatial_stride_px"],
        tile_sample_stride_width=st["encode_spatial_stride_px"],
        tile_sample_stride_num_frames=st["encode_temporal_stride_frames"],
    )
    assert twin.use_framewise_encoding and twin.use_framewise_decoding


def test_tiled_matches_diffusers_tiled():
    """Tiny config, tiles of 32 px / 16 frames (stride 24 px / 12 frames): 2 x 2 spatial and 2 temporal tiles.

    25 frames (7 latents) also make a trailing 1-frame temporal tile, dropped by us and empty in diffusers.
    """
    frames, height, width = 25, 48, 40
    torch.manual_seed(0)
    ours = AutoencoderKLCausal3D.from_config(TINY_CONFIG).eval()
    twin = diffusers_twin(ours)
    _enable_same_tiling(ours, twin)
    x = torch.rand(1, 3, frames, height, width) * 2 - 1
    assert temporal_tile_ranges(frames, 12, 17) == [(0, 17), (12, 25)]
    with torch.no_grad():
        mean, mean_df = ours.encode(x).latent_dist.mean, twin.encode(x).latent_dist.mean
        assert mean.shape == (1, 16, (frames - 1) // 4 + 1, height // 8, width // 8) == mean_df.shape
        assert (mean - mean_df).abs().max() <= ATOL
        z = torch.randn_like(mean)
        out, out_df = ours.decode(z).sample, twin.decode(z).sample
    assert out.shape == x.shape == out_df.shape
    assert (out - out_df).abs().max() <= ATOL
    ours.disable_tiling()
    with torch.no_grad():
        untiled = ours.decode(z).sample
    assert (untiled - out).abs().max() > 1e-3  # tiling really changed the computation (random weights)


def test_released_tile_defaults():
    with torch.device("meta"):
        vae = AutoencoderKLCausal3D()
    assert not vae.use_spatial_tiling and not vae.use_temporal_tiling
    vae.enable_tiling()
    assert vae.use_spatial_tiling and vae.use_temporal_tiling
    assert (vae.tile_sample_min_size, vae.tile_latent_min_size, vae.tile_overlap_factor) == (256, 32, 0.25)
    assert (vae.tile_sample_min_tsize, vae.tile_latent_min_tsize) == (64, 16)
    assert vae.tile_settings() == {  # spec 3.7 (official HunyuanVideo)
        "encode_spatial_stride_px": 192, "encode_spatial_blend_latents": 8, "encode_spatial_keep_latents": 24,
        "decode_spatial_stride_latents": 24, "decode_spatial_blend_px": 64, "decode_spatial_keep_px": 192,
        "encode_temporal_stride_frames": 48, "encode_temporal_blend_latents": 4,
        "encode_temporal_keep_latents": 12, "decode_temporal_stride_latents": 12,
        "decode_temporal_blend_frames": 16, "decode_temporal_keep_frames": 48,
    }
    # diffusers' spatial defaults are the same (256 px tile, 192 px stride); temporal: 16/12 frames.
    from diffusers import AutoencoderKLHunyuanVideo

    with torch.device("meta"):
        df = AutoencoderKLHunyuanVideo()
    assert (df.tile_sample_min_height, df.tile_sample_stride_height) == (256, 192)
    vae.disable_tiling()
    assert not vae.use_spatial_tiling and not vae.use_temporal_tiling


def _record(calls: list, fn):
    def wrapped(t: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(t.shape))
        return fn(t)

    return wrapped


def test_released_tiling_bounds_720p_129_frames():
    """Released defaults on a 720p, 129-frame video: every model call sees at most one 65-frame 256 px tile.

    The per-tile model is replaced by a shape-only stand-in on the meta device, so only the tiling schedule
    and stitching run (no compute, no memory): 3 temporal x 4 x 7 spatial tiles, exact output sizes.
    """
    with torch.device("meta"):
        vae = AutoencoderKLCausal3D()
    vae.enable_tiling()
    enc_calls, dec_calls = [], []
    vae._encode_tile = _record(enc_calls, lambda x: torch.zeros(
        x.shape[0], 32, (x.shape[2] - 1) // 4 + 1, x.shape[3] // 8, x.shape[4] // 8, device="meta"))
    vae._decode_tile = _record(dec_calls, lambda z: torch.zeros(
        z.shape[0], 3, (z.shape[2] - 1) * 4 + 1, z.shape[3] * 8, z.shape[4] * 8, device="meta"))
    moments = vae.encode_moments(torch.zeros(1, 3, 129, 720, 1280, device="meta"))
    assert moments.shape == (1, 32, 33, 90, 160)
    assert len(enc_calls) == 3 * 4 * 7 and max(enc_calls) == (1, 3, 65, 256, 256)
    video = vae.decode(torch.zeros(1, 16, 33, 90, 160, device="meta")).sample
    assert video.shape == (1, 3, 129, 720, 1280)
    assert len(dec_calls) == 3 * 4 * 7 and max(dec_calls) == (1, 16, 17, 32, 32)


def test_blend_is_a_linear_ramp():
    prev, cur = torch.randn(1, 2, 3, 5, 6), torch.randn(1, 2, 3, 5, 6)
    expected = cur.clone()
    for i in range(4):
        expected[..., i] = prev[..., -4 + i] * (1 - i / 4) + cur[..., i] * (i / 4)
    assert torch.allclose(blend(prev, cur.clone(), 4, dim=-1), expected, atol=1e-7)


def test_temporal_tile_ranges():
    assert temporal_tile_ranges(129, 48, 65) == [(0, 65), (48, 113), (96, 129)]
    assert temporal_tile_ranges(37, 12, 17) == [(0, 17), (12, 29), (24, 37)]  # (36, 37) dropped
    with pytest.raises(ValueError, match="must be positive"):
        temporal_tile_ranges(10, 0, 5)
