"""Winograd F(2x2, 3x3) VAE convs (hyvideo.accel.cpu.winograd) equal the direct conv within bf16 rounding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hyvideo.accel.cpu import native, winograd


def _rel(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


@pytest.fixture
def enabled(monkeypatch):
    """The C++ kernels loaded and Winograd used for every channel count; skips where they cannot be built.

    monkeypatch restores ``native._LOADED`` afterwards, so a test may switch the kernels off for a comparison."""
    monkeypatch.delenv(native.ENV, raising=False)
    monkeypatch.setattr(native, "_LOADED", native._LOADED)  # restored after the test
    monkeypatch.setattr(winograd, "MIN_OUT_CHANNELS", 1)
    if not native.load():
        pytest.skip("hyvideo's C++ CPU kernels could not be built here (no compiler or ninja)")


@pytest.mark.parametrize("c_in,c_out,t,h,w,slab", [(40, 24, 3, 10, 12, winograd.SLAB_ELEMENTS),
                                                   (8, 36, 1, 6, 4, winograd.SLAB_ELEMENTS),
                                                   (33, 64, 2, 14, 8, 16 * 4 * 4 * 33)])
def test_winograd_conv_equals_conv3d(enabled, monkeypatch, c_in, c_out, t, h, w, slab):
    # channel counts off the kernels' 32-channel blocks, two samples, and (last case) several tile-row slabs
    monkeypatch.setattr(winograd, "SLAB_ELEMENTS", slab)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, c_in, t + 2, h + 2, w + 2, generator=g).bfloat16()
    conv = torch.nn.Conv3d(c_in, c_out, 3).bfloat16().eval()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) / (27 * c_in) ** 0.5)
    with torch.inference_mode():
        assert winograd.winograd_usable(x, conv)
        out = winograd.conv3d_winograd(x, winograd.winograd_weight(conv.weight).bfloat16(), conv.bias)
        direct = F.conv3d(x, conv.weight, conv.bias)
        gold = F.conv3d(x.float(), conv.weight.float(), conv.bias.float())
    assert out.shape == gold.shape == (2, c_out, t, h, w) and out.dtype == torch.bfloat16
    err, err_direct = _rel(out, gold), _rel(direct, gold)
    assert err <= 1e-2 and err <= 4 * err_direct, (err, err_direct)


def test_winograd_weight_transform_matches_the_definition():
    w = torch.randn(3, 2, 3, 3, 3, dtype=torch.float64)
    u = winograd.winograd_weight(w)  # [16, C_out, 3 C_in], K = t C_in + c
    g = torch.tensor(winograd._G, dtype=torch.float64)
    for o, c, tt in [(0, 0, 0), (2, 1, 2), (1, 0, 1)]:
        ref = (g @ w[o, c, tt] @ g.T).reshape(16)
        assert torch.allclose(u[:, o, tt * 2 + c].double(), ref, atol=1e-6)


def test_fused_prologue_padding_and_residual_equal_the_unfused_ops(enabled):
    # winograd_frames reads raw frames: GroupNorm affine + SiLU, replicate border, causal front frames, += out
    g = torch.Generator().manual_seed(2)
    c, c_out, t, h, w = 40, 24, 3, 6, 10
    x = torch.randn(c, t, h, w, generator=g).bfloat16()
    weight = (torch.randn(c_out, c, 3, 3, 3, generator=g) / (27 * c) ** 0.5).bfloat16()
    bias, scale, shift = torch.randn(c_out, generator=g), torch.rand(c, generator=g) + 0.5, torch.randn(c, generator=g)
    res = torch.randn(c_out, t, h, w, generator=g).bfloat16()
    out = res.clone()
    frames = [x[:, max(f, 0)] for f in range(-2, t)]  # the first frame repeated in front (causal replicate)
    winograd.winograd_frames(frames, winograd.winograd_weight(weight).bfloat16(), bias, out, pad=1, scale=scale,
                             shift=shift, silu=True, accumulate=True)
    a = F.silu(x.float() * scale[:, None, None, None] + shift[:, None, None, None])
    a = F.pad(a[None], (1, 1, 1, 1, 2, 0), mode="replicate")
    gold = F.conv3d(a, weight.float(), bias)[0] + res.float()
    assert _rel(out, gold) <= 1e-2, _rel(out, gold)
    assert _rel(out, res) > 0.1  # the conv was added, not skipped


def test_fused_path_only_for_replicate_causal_3x3x3(enabled):
    from hyvideo.vae.causal_conv import CausalConv3d

    x = torch.zeros(1, 4, 2, 8, 8, dtype=torch.bfloat16)
    conv = CausalConv3d(4, 8, 3, pad_mode="replicate").bfloat16()
    with torch.inference_mode():
        assert winograd.fused_usable(x, conv, torch.nn.SiLU()) and winograd.fused_usable(x, conv, None)
        assert not winograd.fused_usable(x, conv, torch.nn.GELU())
        assert not winograd.fused_usable(x, CausalConv3d(4, 8, 3, pad_mode="constant").bfloat16(), None)
        assert not winograd.fused_usable(x, conv.conv, None)  # a plain Conv3d has no causal padding


def test_winograd_is_not_used_where_it_cannot_run(enabled):
    conv = torch.nn.Conv3d(4, 8, 3).bfloat16()
    x = torch.zeros(1, 4, 4, 10, 10, dtype=torch.bfloat16)
    with torch.inference_mode():
        assert winograd.winograd_usable(x, conv)
        assert not winograd.winograd_usable(x.float(), conv.float())  # float32: direct conv
        assert not winograd.winograd_usable(x[..., :9], conv)  # odd width
        assert not winograd.winograd_usable(x, torch.nn.Conv3d(4, 8, 3, stride=2).bfloat16())
        assert not winograd.winograd_usable(x, torch.nn.Conv3d(4, 8, 1).bfloat16())
    assert not winograd.winograd_usable(x, conv)  # autograd on, trainable weight


def test_native_kernels_are_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv(native.ENV, "0")
    monkeypatch.setattr(native, "_LOADED", None)
    conv = torch.nn.Conv3d(4, 256, 3).bfloat16()
    with torch.inference_mode():
        assert not winograd.winograd_usable(torch.zeros(1, 4, 4, 10, 10, dtype=torch.bfloat16), conv)
    assert native._LOADED is False


@torch.no_grad()
def test_lean_decode_with_winograd_stays_within_bf16_tolerance(enabled):
    from hyvideo.accel.cpu.lean_decode import LeanDecoderCausal3D
    from hyvideo.vae.autoencoder import AutoencoderKLCausal3D

    vae = AutoencoderKLCausal3D.from_config(Path(__file__).resolve().parents[2] / "hyvideo" / "configs" / "vae_tiny.json")
    for p in vae.parameters():
        p.normal_(0, 0.3)
    vae.eval()
    z = torch.randn(1, 16, 3, 4, 6, generator=torch.Generator().manual_seed(1))
    gold = vae.decode(z).sample
    vb = vae.bfloat16()
    vb.decoder.__class__ = LeanDecoderCausal3D
    with torch.inference_mode():
        vb.decoder.kernels = True
        wino = vb.decode(z.bfloat16()).sample
        vb.decoder.kernels = False  # the same walk with F.conv3d
        direct = vb.decode(z.bfloat16()).sample
    assert wino.shape == gold.shape == (1, 3, 9, 32, 48)
    err, err_direct = _rel(wino, gold), _rel(direct, gold)
    assert err <= 5e-2 and err <= 4 * err_direct, (err, err_direct)


@pytest.mark.parametrize("factor,c,t,h,w", [((2, 2, 2), 40, 5, 6, 10), ((1, 2, 2), 33, 3, 4, 8), ((2, 2, 2), 8, 1, 2, 2)])
@pytest.mark.parametrize("chunk", [1, 2, 16])
def test_polyphase_upsampler_by_winograd_f2x2_2x2(enabled, factor, c, t, h, w, chunk):
    from hyvideo.accel.cpu.lean_decode import upsample_lean
    from hyvideo.vae.causal_conv import UpsampleCausal3D

    up = UpsampleCausal3D(c, factor).eval()
    g = torch.Generator().manual_seed(c)
    with torch.no_grad():
        for p in up.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    x = torch.randn(1, c, t, h, w, generator=g)
    with torch.inference_mode():
        gold = up(x)
        ub = up.bfloat16()
        assert winograd.up_usable(x.bfloat16(), ub.conv.conv, factor)
        wino = upsample_lean(ub, x.bfloat16(), chunk, kernels=True)
        direct = upsample_lean(ub, x.bfloat16(), chunk)  # the direct polyphase conv
    assert wino.shape == direct.shape == gold.shape
    err, err_direct = _rel(wino, gold), _rel(direct, gold)
    assert err <= 1e-2 and err <= 4 * err_direct, (err, err_direct)
