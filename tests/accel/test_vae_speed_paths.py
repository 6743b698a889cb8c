"""The VAE's faster conv forms (hyvideo.accel.vae_convs) equal the plain math; the accelerated decode too."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hyvideo import accel
from hyvideo.accel.vae_convs import FastCausalConv3d as CausalConv3d
from hyvideo.accel.vae_convs import PolyphaseUpsampleCausal3D as UpsampleCausal3D
from hyvideo.accel.vae_convs import upsample_conv_polyphase
from hyvideo.vae.autoencoder import AutoencoderKLCausal3D

TINY_CONFIG = Path(__file__).resolve().parents[2] / "hyvideo" / "configs" / "vae_tiny.json"


def _upsample_then_conv(up: UpsampleCausal3D, x: torch.Tensor) -> torch.Tensor:
    """The released form: nearest-upsample (frame 0 spatially only), then the replicate-padded causal conv."""
    f = up.scale_factor
    first = F.interpolate(x[:, :, :1].squeeze(2), scale_factor=f[1:], mode="nearest").unsqueeze(2)
    if x.shape[2] > 1:
        first = torch.cat((first, F.interpolate(x[:, :, 1:], scale_factor=f, mode="nearest")), dim=2)
    return up.conv.conv(F.pad(first, up.conv.causal_padding, mode="replicate"))  # pad + conv, no shortcuts


@pytest.mark.parametrize("factor", [(2, 2, 2), (1, 2, 2), (2, 1, 1), (1, 1, 2)])
@pytest.mark.parametrize("frames", [1, 2, 5])
def test_polyphase_upsample_equals_upsample_then_conv(factor, frames):
    torch.manual_seed(0)
    up = UpsampleCausal3D(6, factor)
    x = torch.randn(2, 6, frames, 5, 7)
    ref = _upsample_then_conv(up, x)
    out = up(x)
    assert out.shape == ref.shape == (2, 6, 1 + factor[0] * (frames - 1), 5 * factor[1], 7 * factor[2])
    assert out.is_contiguous()
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()


@pytest.mark.parametrize("frames", [1, 2, 3, 6, 14])
def test_folded_front_causal_conv_equals_pad_then_conv(frames):
    """The k_t = 3 causal conv skips the replicated front frames: same values and gradients as pad + conv."""
    torch.manual_seed(0)
    conv = CausalConv3d(4, 6, 3).double()
    x = torch.randn(2, 4, frames, 5, 7, dtype=torch.float64, requires_grad=True)
    ref = conv.conv(F.pad(x, conv.causal_padding, mode="replicate"))
    out = conv(x)
    assert out.shape == ref.shape == (2, 6, frames, 5, 7)
    assert (out - ref).abs().max() <= 1e-12
    g_ref = torch.autograd.grad(ref.square().sum(), [x, conv.conv.weight, conv.conv.bias])
    g_out = torch.autograd.grad(out.square().sum(), [x, conv.conv.weight, conv.conv.bias])
    for a, b in zip(g_out, g_ref):
        assert (a - b).abs().max() <= 1e-10 * b.abs().max()
    with torch.no_grad():  # cached folded kernels follow weight updates
        conv.conv.weight.mul_(2)
        assert (conv(x) - conv.conv(F.pad(x, conv.causal_padding, mode="replicate"))).abs().max() <= 1e-12


def test_polyphase_gradients_match():
    torch.manual_seed(0)
    up = UpsampleCausal3D(4, (2, 2, 2))
    x = torch.randn(1, 4, 3, 4, 4, requires_grad=True)
    g = torch.randn(1, 4, 5, 8, 8)
    (up(x) * g).sum().backward()
    got = (x.grad.clone(), up.conv.conv.weight.grad.clone())
    x.grad, up.conv.conv.weight.grad = None, None
    (_upsample_then_conv(up, x) * g).sum().backward()
    assert torch.allclose(got[0], x.grad, atol=1e-4) and torch.allclose(got[1], up.conv.conv.weight.grad, atol=1e-4)


def test_folded_kernel_cache_follows_weight_updates():
    torch.manual_seed(0)
    up = UpsampleCausal3D(4, (2, 2, 2)).eval()
    x = torch.randn(1, 4, 3, 4, 4)
    with torch.no_grad():
        first = up(x)
        up.conv.conv.weight.mul_(2.0)  # in-place update bumps the version: the cached fold must be redone
        second = up(x)
        ref = _upsample_then_conv(up, x)
    assert not torch.allclose(first, second)
    assert (second - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_polyphase_rejects_unsupported_factor():
    conv = torch.nn.Conv3d(2, 2, 3)
    with pytest.raises(ValueError, match="factors 1 or 2"):
        upsample_conv_polyphase(torch.randn(1, 2, 2, 3, 3), conv, (3, 2, 2))


def test_accelerated_decode_equals_plain_and_bf16_runs():
    import copy

    torch.manual_seed(0)
    vae = AutoencoderKLCausal3D.from_config(TINY_CONFIG).eval()
    z = torch.randn(1, 16, 3, 4, 4)
    with torch.no_grad():
        plain = vae.decode(z).sample
        fast_vae = copy.deepcopy(vae)
        plan = accel.apply(vae=fast_vae, options=accel.AccelOptions(device="cpu", min_fast_vae_width=0))
        assert plan.on("vae-fast-convs") and plan.on("vae-lean-decode")
        assert list(fast_vae.state_dict()) == list(vae.state_dict())
        fast = fast_vae.decode(z).sample
    assert fast.shape == plain.shape == (1, 3, 9, 32, 32)
    assert (fast - plain).abs().max() <= 1e-4
    vae_bf16 = fast_vae.to(torch.bfloat16)
    with torch.no_grad():
        out = vae_bf16.decode(z.bfloat16()).sample
        enc = vae_bf16.encode(out).latent_dist.mean
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert ((out.float() - plain).abs().max() / plain.abs().max()) < 5e-2
    assert enc.shape == (1, 16, 3, 4, 4) and enc.dtype == torch.bfloat16


def test_models_built_under_inference_mode_run_their_cached_fast_paths():
    """Inference tensors have no version counter; the folded-kernel and packed-weight caches must not need one."""
    from hyvideo.accel.cpu.linear import pack_linear_weights  # noqa: PLC0415

    with torch.inference_mode():
        torch.manual_seed(0)
        conv = CausalConv3d(4, 5, kernel_size=3)  # weights are inference tensors
        x = torch.randn(1, 4, 3, 6, 6)
        ref = conv.conv(F.pad(x, conv.causal_padding, mode="replicate"))
        torch.testing.assert_close(conv(x), ref, rtol=1e-5, atol=1e-5)  # folded front frames, cached
        torch.testing.assert_close(conv(x), ref, rtol=1e-5, atol=1e-5)  # cache hit
        lin = torch.nn.Sequential(torch.nn.Linear(8, 16)).bfloat16()
        assert pack_linear_weights(lin) == 1
        y = torch.randn(2, 8).bfloat16()
        torch.testing.assert_close(lin(y), F.linear(y, lin[0].weight, lin[0].bias), rtol=1e-2, atol=1e-2)


def test_pointwise_conv_is_the_1x1x1_conv_and_takes_frame_views():
    torch.manual_seed(0)
    conv = CausalConv3d(6, 4, kernel_size=1)
    chunk = torch.randn(2, 6, 5, 7, 9, dtype=torch.float64)
    x = chunk[:, :, 1:3]  # frames of a larger chunk: a non-contiguous view, as the lean walk passes them
    conv = conv.double()
    ref = F.conv3d(x.contiguous(), conv.conv.weight, conv.conv.bias)
    with torch.no_grad():
        out = conv(x)
    assert out.shape == (2, 4, 2, 7, 9) and out.is_contiguous()
    assert torch.allclose(out, ref, rtol=0, atol=1e-12)
    xg = x.clone().requires_grad_(True)  # differentiable (training runs the same op)
    conv(xg).square().sum().backward()
    xr = x.clone().requires_grad_(True)
    F.conv3d(xr, conv.conv.weight, conv.conv.bias).square().sum().backward()
    assert torch.allclose(xg.grad, xr.grad, rtol=0, atol=1e-10)
