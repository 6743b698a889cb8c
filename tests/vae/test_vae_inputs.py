"""Shapes, causality and clear errors of AutoencoderKLCausal3D."""

from __future__ import annotations

import re

import pytest
import torch

from hyvideo.vae.autoencoder import AutoencoderKLCausal3D
from hyvideo.vae.causal_conv import CausalConv3d
from vae_twin import load_config, TINY_CONFIG


@pytest.mark.parametrize("frames", [1, 5, 9])
def test_latent_shape_rule(tiny_vae, frames):
    x = torch.rand(1, 3, frames, 16, 24) * 2 - 1
    with torch.no_grad():
        post = tiny_vae.encode(x).latent_dist
        assert post.mean.shape == (1, 16, (frames - 1) // 4 + 1, 2, 3)
        assert tiny_vae.decode(post.mode()).sample.shape == x.shape


def test_causal_conv_sees_only_past_frames():
    conv = CausalConv3d(4, 4, kernel_size=3)
    x = torch.randn(1, 4, 6, 5, 5)
    y = conv(x)
    x2 = x.clone()
    x2[:, :, 3:] += 1  # change frames 3..5 only
    y2 = conv(x2)
    assert torch.equal(y[:, :, :3], y2[:, :, :3])
    assert not torch.allclose(y[:, :, 3:], y2[:, :, 3:])


def test_first_frame_alone_encodes_like_an_image(tiny_vae):
    """With causal padding the first frame is processed alone: a 1-frame video is an image (T_z = 1).

    Its latent is not identical to the first latent of a longer clip (GroupNorm pools over T), but the
    encoder's convs never look ahead; the frame-causal attention core is checked in the parity tests.
    """
    x = torch.rand(1, 3, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        z = tiny_vae.encode(x).latent_dist.mean
    assert z.shape == (1, 16, 1, 2, 2)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 3, 4, 16, 16), "frames must be T = 1 + 4k"),
        ((1, 3, 6, 16, 16), "frames must be T = 1 + 4k"),
        ((1, 3, 5, 20, 16), "multiples of the spatial compression ratio 8"),
        ((1, 3, 5, 16, 12), "multiples of the spatial compression ratio 8"),
        ((1, 4, 5, 16, 16), "expected 3 pixel channels"),
        ((3, 5, 16, 16), "5 dims"),
    ],
)
def test_bad_pixels_raise(tiny_vae, shape, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        tiny_vae.encode(torch.zeros(shape))


def test_bad_latents_raise(tiny_vae):
    with pytest.raises(ValueError, match="expected 16 latent channels"):
        tiny_vae.decode(torch.zeros(1, 8, 2, 2, 2))
    with pytest.raises(ValueError, match="5 dims"):
        tiny_vae.decode(torch.zeros(16, 2, 2, 2))


def test_bad_config_raises():
    cfg = load_config(TINY_CONFIG)
    with pytest.raises(ValueError, match="unknown VAE config keys"):
        AutoencoderKLCausal3D.from_config({**cfg, "tile_size": 3})
    with pytest.raises(ValueError, match="not divisible by norm_num_groups"):
        AutoencoderKLCausal3D.from_config({**cfg, "block_out_channels": [8, 8, 8, 6]})


def test_bad_tile_settings_raise():
    vae = AutoencoderKLCausal3D.from_config(TINY_CONFIG)
    vae.enable_tiling()
    vae.tile_sample_min_size = 36  # stride int(36 * 0.75) = 27 px, not a multiple of 8
    with pytest.raises(ValueError, match="spatial tile stride 27 px"):
        vae.encode(torch.zeros(1, 3, 1, 64, 64))
