"""Memory-lean chunked VAE decoder ops equal the plain modules (the released block types, tiny sizes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hyvideo.accel.cpu.lean_decode import FrameChunks, norm_act_conv_lean, resnet_lean, upsample_lean
from hyvideo.vae.blocks import ResnetBlockCausal3D
from hyvideo.vae.causal_conv import CausalConv3d, UpsampleCausal3D

FP32_TOL = 1e-5  # same math; GroupNorm statistics accumulate in a different order
BF16_TOL = 2e-2
TINY_CONFIG = Path(__file__).resolve().parents[2] / "hyvideo" / "configs" / "vae_tiny.json"


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
    x_before = x.clone()
    assert _rel(resnet_lean(block, x, chunk), ref) <= FP32_TOL
    assert torch.equal(x, x_before)  # not in place unless asked
    chunks = FrameChunks(list(x.clone().split(chunk, dim=2)))
    out = resnet_lean(block, chunks, chunk, inplace=True)
    assert isinstance(out, FrameChunks) and _rel(out.tensor(), ref) <= FP32_TOL
    out = resnet_lean(block, x.clone(), chunk, inplace=True)
    assert _rel(out, ref) <= FP32_TOL
    xb, bb = x.bfloat16(), block.bfloat16()
    assert _rel(resnet_lean(bb, xb, chunk), bb(xb)) <= BF16_TOL


@pytest.mark.parametrize("factor", [(2, 2, 2), (1, 2, 2)])
@pytest.mark.parametrize("t,chunk", [(1, 3), (4, 3), (5, 1), (5, 2)])
@torch.no_grad()
def test_upsample_and_output_conv_lean_equal_modules(t, chunk, factor):
    up = _randomize(UpsampleCausal3D(6, factor))
    x = torch.randn(2, 6, t, 4, 5)
    ref = up(x)
    out = upsample_lean(up, x, chunk=chunk)
    assert out.shape == ref.shape == (2, 6, 1 + factor[0] * (t - 1), 8, 10)
    assert _rel(out, ref) <= FP32_TOL
    chunks = FrameChunks(list(x.clone().split(chunk, dim=2)))
    assert _rel(upsample_lean(up, chunks, chunk, release=True).tensor(), ref) <= FP32_TOL
    assert all(c is None for c in chunks.chunks[:-1])  # consumed input chunks were freed
    norm, act, conv = _randomize(torch.nn.GroupNorm(2, 6, eps=1e-6)), torch.nn.SiLU(), _randomize(CausalConv3d(6, 3))
    assert _rel(norm_act_conv_lean(norm, act, conv, ref, chunk=2), conv(act(norm(ref)))) <= FP32_TOL


def test_released_chunk_is_an_error():
    chunks = FrameChunks(list(torch.zeros(1, 2, 6, 3, 3).split(2, dim=2)))
    chunks.release_before(4)
    assert chunks.frames(4, 6).shape[2] == 2
    with pytest.raises(RuntimeError, match="frames 1..4 needed, but the chunk of frames 0..1 was released"):
        chunks.frames(1, 5)


@pytest.mark.parametrize("chunk", [1, 2, 5])
@torch.no_grad()
def test_decoder_forward_lean_equals_decoder(chunk):
    from hyvideo.accel.cpu.lean_decode import decoder_forward_lean
    from hyvideo.vae.autoencoder import AutoencoderKLCausal3D

    vae = _randomize(AutoencoderKLCausal3D.from_config(TINY_CONFIG))
    z = torch.randn(1, 16, 3, 4, 4)
    ref = vae.decoder(vae.post_quant_conv(z))
    out = decoder_forward_lean(vae.decoder, vae.post_quant_conv(z), chunk=chunk)
    assert out.shape == ref.shape == (1, 3, 9, 32, 32)
    assert _rel(out, ref) <= 1e-4  # fp32, ~20 chained convs


@pytest.mark.parametrize("tiled", [False, True])
def test_vae_decode_with_lean_walk_equals_plain(tiled):
    import copy

    from hyvideo import accel
    from hyvideo.accel.cpu.lean_decode import LeanDecoderCausal3D
    from hyvideo.vae.autoencoder import AutoencoderKLCausal3D

    vae = _randomize(AutoencoderKLCausal3D.from_config(TINY_CONFIG))
    vae.enable_tiling(tiled)
    z = torch.randn(1, 16, 3, 6, 5)
    lean = copy.deepcopy(vae)
    lean.decoder.__class__ = LeanDecoderCausal3D
    with torch.no_grad():
        ref = vae.decode(z).sample
        out = lean.decode(z).sample
    assert out.shape == ref.shape == (1, 3, 9, 48, 40)
    assert _rel(out, ref) <= 1e-4
    z.requires_grad_(True)  # with autograd the plain modules run (the lean walk is inference-only)
    lean.decode(z).sample.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_lean_decode_is_chosen_on_cpu_only():
    from hyvideo import accel
    from hyvideo.accel.cpu.lean_decode import LeanDecoderCausal3D
    from hyvideo.vae.autoencoder import AutoencoderKLCausal3D

    vae = AutoencoderKLCausal3D.from_config(TINY_CONFIG)
    plan = accel.apply(vae=vae, options=accel.AccelOptions(device="cpu", min_fast_vae_width=0))
    assert type(vae.decoder) is LeanDecoderCausal3D and plan.on("vae-lean-decode")
    vae = AutoencoderKLCausal3D.from_config(TINY_CONFIG)
    plan = accel.apply(vae=vae, options=accel.AccelOptions(device="cpu", cpu_paths=False, min_fast_vae_width=0))
    assert type(vae.decoder) is not LeanDecoderCausal3D and not plan.on("vae-lean-decode")


def test_group_statistics_kernel_equals_float64_reference():
    from hyvideo.accel.cpu import native
    from hyvideo.accel.cpu.lean_decode import _chunk_group_stats

    if not native.load():
        pytest.skip("hyvideo's C++ CPU kernels could not be built here (no compiler or ninja)")
    g = torch.Generator().manual_seed(0)
    full = (torch.randn(2, 12, 5, 6, 10, generator=g) * 0.05 + 40).bfloat16()  # |mean| >> std
    full[1] = full[1] * 20 - 800
    piece = full[:, :, 1:4]  # a frame chunk: a strided view, as FrameChunks.of makes
    mean, m2, n = _chunk_group_stats(piece, 3, None, None, kernels=True)
    ref = piece.double().reshape(2, 3, -1)
    assert n == 4 * 3 * 6 * 10 and mean.dtype == m2.dtype == torch.float64 and mean.shape == (2, 3)
    torch.testing.assert_close(mean, ref.mean(-1), rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(m2, ref.var(-1, unbiased=False) * n, rtol=1e-6, atol=1e-9)


def test_narrow_vaes_keep_the_plain_convs():
    """Below the measured width the conv forms and the chunked walk are slower: accel leaves the VAE as is."""
    from hyvideo import accel
    from hyvideo.vae.autoencoder import AutoencoderKLCausal3D
    from hyvideo.vae.causal_conv import CausalConv3d

    vae = AutoencoderKLCausal3D.from_config(TINY_CONFIG)  # width 8
    plan = accel.apply(vae=vae, options=accel.AccelOptions(device="cpu"))
    assert not plan.on("vae-fast-convs") and "plain convs are faster" in str(plan)
    assert all(type(m) is CausalConv3d for m in vae.modules() if isinstance(m, CausalConv3d))
