"""Memory-lean chunked VAE decoder ops equal the plain modules (the released block types, tiny sizes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hyvideo.ops.lean_conv import norm_act_conv_lean, resnet_lean, upsample_lean
from hyvideo.vae.blocks import ResnetBlockCausal3D
from hyvideo.vae.causal_conv import CausalConv3d, UpsampleCausal3D

FP32_TOL = 1e-5  # same math; GroupNorm statistics accumulate in a different order
BF16_TOL = 2e-2


def _rel(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def _randomize(m):
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.3)
    return m.eval()


@pytest.mark.parametrize("chunk", [1, 3, 16])
@pytest.mark.parametrize("c_in,c_out", [(8, 8), (8, 12)])
@torch.no_grad()
def test_resnet_lean_equals_module(chunk, c_in, c_out):
    block = _randomize(ResnetBlockCausal3D(c_in, c_out, num_groups=4))
    x = torch.randn(1, c_in, 5, 6, 7) * 2 + 0.5
    ref = block(x)
    assert _rel(resnet_lean(block, x, chunk), ref) <= FP32_TOL
    out = resnet_lean(block, x.clone(), chunk, inplace=True)
    assert _rel(out, ref) <= FP32_TOL
    xb, bb = x.bfloat16(), block.bfloat16()
    assert _rel(resnet_lean(bb, xb, chunk), bb(xb)) <= BF16_TOL


@pytest.mark.parametrize("t", [1, 4])
@torch.no_grad()
def test_upsample_and_output_conv_lean_equal_modules(t):
    up = _randomize(UpsampleCausal3D(6, (2, 2, 2)))
    x = torch.randn(2, 6, t, 4, 5)
    ref = up(x)
    out = upsample_lean(up, x, chunk=3)
    assert out.shape == ref.shape == (2, 6, 1 + 2 * (t - 1), 8, 10)
    assert _rel(out, ref) <= FP32_TOL
    norm, act, conv = _randomize(torch.nn.GroupNorm(2, 6, eps=1e-6)), torch.nn.SiLU(), _randomize(CausalConv3d(6, 3))
    assert _rel(norm_act_conv_lean(norm, act, conv, ref, chunk=2), conv(act(norm(ref)))) <= FP32_TOL


@torch.no_grad()
def test_decoder_forward_lean_equals_decoder():
    from hyvideo.ops.lean_conv import decoder_forward_lean
    from hyvideo.vae.autoencoder import AutoencoderKLCausal3D

    vae = _randomize(AutoencoderKLCausal3D.from_config(Path(__file__).resolve().parents[2] / "configs" / "vae_tiny.json"))
    z = torch.randn(1, 16, 3, 4, 4)
    ref = vae.decoder(vae.post_quant_conv(z))
    out = decoder_forward_lean(vae.decoder, vae.post_quant_conv(z), chunk=2)
    assert out.shape == ref.shape == (1, 3, 9, 32, 32)
    assert _rel(out, ref) <= 1e-4  # fp32, ~20 chained convs
