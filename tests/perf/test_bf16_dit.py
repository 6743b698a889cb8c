"""The bf16 inference paths of the DiT (fused norms/modulation, bf16 RoPE, split linear2, text trimming)
stay within bf16 tolerance of the float32 model and keep padded text exact."""

from __future__ import annotations

import copy

import pytest
import torch

from hyvideo import HYVideoDiffusionTransformer
from hyvideo.models.rope import apply_rope, extend_rope_identity, rope_freqs_3d

BF16_REL_TOL = 2e-2  # bf16 keeps 8 mantissa bits and accumulates over K (same bound as the acceptance)
CFG = dict(in_channels=16, out_channels=16, hidden_size=64, heads_num=4, rope_dim_list=[4, 6, 6],
           mm_double_blocks_depth=2, mm_single_blocks_depth=2, text_states_dim=24, text_states_dim_2=12)


def _rel(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


@torch.no_grad()
def test_bf16_forward_within_tolerance_of_fp32():
    model = HYVideoDiffusionTransformer(**CFG).eval()
    for p in model.parameters():
        p.normal_(0, 0.05)
    mask = torch.zeros(2, 10, dtype=torch.long)
    mask[0, :7], mask[1, :4] = 1, 1  # cols 7..9 are padding in every row: trimmed away
    inp = dict(x=torch.randn(2, 16, 3, 8, 12), t=torch.tensor([900.0, 250.0]), text_states=torch.randn(2, 10, 24),
               text_mask=mask, text_states_2=torch.randn(2, 12), guidance=torch.tensor([6016.0, 3504.0]))
    ref = model(**inp)
    model16 = copy.deepcopy(model).to(torch.bfloat16)
    cast = {k: v.to(torch.bfloat16) if v.is_floating_point() and k != "t" else v for k, v in inp.items()}
    out = model16(**cast)
    assert out.dtype == torch.bfloat16
    assert _rel(out, ref) <= BF16_REL_TOL, _rel(out, ref)
    # trimming the all-padding text columns is exact (same bf16 output as the untrimmed call sees)
    short = {**cast, "text_states": cast["text_states"][:, :7], "text_mask": mask[:, :7]}
    torch.testing.assert_close(model16(**short), out, rtol=0, atol=0)


def test_bf16_rope_and_identity_extension():
    cos, sin = rope_freqs_3d((2, 3, 4), (4, 6, 6))
    x = torch.randn(2, 24, 3, 16)
    ref = apply_rope(x, cos, sin)
    out = apply_rope(x.bfloat16(), cos, sin)
    assert out.dtype == torch.bfloat16 and _rel(out, ref) <= BF16_REL_TOL
    txt = torch.randn(2, 5, 3, 16)
    joint = apply_rope(torch.cat([x, txt], 1), *extend_rope_identity(cos, sin, 5))
    torch.testing.assert_close(joint[:, :24], ref, rtol=1e-6, atol=1e-6)
    assert torch.equal(joint[:, 24:], txt)  # identity rows leave the text tokens untouched


def test_bf16_rms_norm_within_three_roundings_of_fp32():
    from hyvideo.models.norms import RMSNorm  # noqa: PLC0415

    norm = RMSNorm(64)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = (torch.randn(2, 33, 3, 64) * 5).bfloat16()
    norm16 = copy.deepcopy(norm).to(torch.bfloat16)
    ref = copy.deepcopy(norm16).float()(x.float())  # float32 math on the same bf16 inputs and weight
    out = norm16(x)
    assert out.dtype == torch.bfloat16
    assert ((out.float() - ref).abs() <= ref.abs() * 3 * 2**-8).all()  # three bf16 roundings (unit roundoff 2^-8)


def test_gemm_attention_backend_matches_reference_with_padded_keys():
    import hyvideo.ops.attention as attn  # noqa: PLC0415

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 70, 3, 16) for _ in range(3))
    key_mask = torch.ones(2, 70, dtype=torch.bool)
    key_mask[1, 50:] = False  # trailing padding
    key_mask[1, 7] = False  # and a hole
    ref = attn.attention(q, k, v, key_mask=key_mask, backend="naive")
    old = attn.GEMM_SCORE_ELEMENTS
    try:
        attn.GEMM_SCORE_ELEMENTS = 20 * 70  # several query chunks per head
        out = attn.attention(q, k, v, key_mask=key_mask, backend="gemm")
    finally:
        attn.GEMM_SCORE_ELEMENTS = old
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    qb, kb, vb = (x.bfloat16() for x in (q, k, v))
    auto = attn.attention(qb, kb, vb, key_mask=key_mask)  # "auto" on CPU bf16 -> gemm
    assert torch.equal(auto, attn.attention(qb, kb, vb, key_mask=key_mask, backend="gemm"))
    assert _rel(auto, ref) <= BF16_REL_TOL, _rel(auto, ref)


def test_fused_gelu_linear_and_packed_weights():
    from torch import nn  # noqa: PLC0415

    from hyvideo.ops.linear import PackedLinear, fused_linear, pack_linear_weights  # noqa: PLC0415

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(48, 96), nn.GELU(approximate="tanh")).to(torch.bfloat16)
    x = torch.randn(3, 40, 48, dtype=torch.bfloat16)
    unfused = model(x)
    with torch.no_grad():
        fused = fused_linear(x, model[0], gelu="tanh")
        assert ((fused.float() - unfused.float()).abs() <= unfused.float().abs() * 2**-7 + 2**-10).all()
        part = fused_linear(x, model[0], rows=(16, 64))
        torch.testing.assert_close(part, nn.functional.linear(x, model[0].weight[16:64], model[0].bias[16:64]))
    assert pack_linear_weights(model) == 1 and type(model[0]) is PackedLinear
    assert list(model.state_dict()) == ["0.weight", "0.bias"]
    with torch.no_grad():
        plain = nn.functional.linear(x, model[0].weight, model[0].bias)
        torch.testing.assert_close(model[0](x), plain, rtol=1e-2, atol=1e-2)
        model[0].load_state_dict({"weight": -model[0].weight, "bias": model[0].bias})  # in-place copy
        new = nn.functional.linear(x, model[0].weight, model[0].bias)
        assert (new - plain).abs().max() > 1  # the weights did change ...
        torch.testing.assert_close(model[0](x), new, rtol=1e-2, atol=1e-2)  # ... and the packed copy followed
    y = model[0](x.float().requires_grad_().bfloat16())  # autograd: the plain op, gradients flow
    assert y.grad_fn is not None


@torch.no_grad()
def test_packed_dit_matches_unpacked():
    model = HYVideoDiffusionTransformer(**CFG).eval()
    for p in model.parameters():
        p.normal_(0, 0.05)
    model = model.to(torch.bfloat16)
    inp = dict(x=torch.randn(1, 16, 3, 8, 12).bfloat16(), t=torch.tensor([700.0]),
               text_states=torch.randn(1, 10, 24).bfloat16(), text_mask=torch.ones(1, 10, dtype=torch.long),
               text_states_2=torch.randn(1, 12).bfloat16(), guidance=torch.tensor([6016.0]))
    ref = model(**inp)
    keys = list(model.state_dict())
    assert model.enable_cpu_weight_packing() > 0
    assert list(model.state_dict()) == keys
    assert _rel(model(**inp), ref) <= 1e-2


def test_patch_embed_is_the_strided_conv_with_contiguous_tokens():
    from hyvideo.models.embeddings import PatchEmbed3D

    torch.manual_seed(0)
    emb = PatchEmbed3D((1, 2, 2), 16, 32).double()
    x = torch.randn(2, 16, 3, 8, 6, dtype=torch.float64)
    ref = emb.proj(x).flatten(2).transpose(1, 2)  # the released formulation: [B, L, D], t-major then h, w
    out = emb(x)
    # contiguous tokens: a transposed view made every later op on the image tokens several times slower
    assert out.is_contiguous() and out.shape == ref.shape == (2, 3 * 4 * 3, 32)
    assert torch.allclose(out, ref, rtol=0, atol=1e-12)


@torch.no_grad()
def test_fused_qk_norm_rope_rounds_once_into_the_joint_buffer(monkeypatch):
    from hyvideo.models.norms import RMSNorm  # noqa: PLC0415
    from hyvideo.models.rope import norm_rope_joint  # noqa: PLC0415
    from hyvideo.ops import native  # noqa: PLC0415

    monkeypatch.setattr(native, "_LOADED", native._LOADED)  # restored after the test
    if not native.load():
        pytest.skip("hyvideo's C++ CPU kernels could not be built here (no compiler or ninja)")
    cos, sin = rope_freqs_3d((2, 3, 4), (4, 6, 6))  # [24, 16]
    norms = [RMSNorm(16), RMSNorm(16)]
    for n in norms:
        n.weight.normal_(1, 0.3)
    img = (torch.randn(2, 24, 3, 3, 16) * 3)[:, :, :, 0]  # strided heads, as rearranged from a qkv linear
    txt = torch.randn(2, 5, 3, 16)
    ref = torch.cat([apply_rope(norms[0](img), cos, sin), norms[1](txt)], 1)  # float32 module path
    nb = [RMSNorm(16).bfloat16() for _ in norms]
    for a, b in zip(nb, norms):
        a.weight.copy_(b.weight)
    parts = [(nb[0], img.bfloat16(), (cos, sin)), (nb[1], txt.bfloat16(), None)]
    fused = norm_rope_joint(parts, torch.bfloat16)
    monkeypatch.setattr(native, "_LOADED", False)
    unfused = norm_rope_joint(parts, torch.bfloat16)
    assert fused.shape == unfused.shape == (2, 29, 3, 16) and fused.dtype == torch.bfloat16
    # one rounding of float32 math on the bf16 inputs (whose own rounding is the same for both paths)
    assert _rel(fused, ref) <= _rel(unfused, ref) <= BF16_REL_TOL, (_rel(fused, ref), _rel(unfused, ref))
