"""The DiT in bf16 and its CPU bf16 paths (hyvideo.accel.cpu: packed / GELU-fused linears, gemm attention,
fused QK norm + RoPE) stay within bf16 tolerance of the float32 model; each "not supported" branch of the
capability check gives the plain path; bf16 CPU training runs."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from hyvideo import HYVideoDiffusionTransformer
from hyvideo import accel
from hyvideo.accel import capability
from hyvideo.models.rope import apply_rope, rope_freqs_3d
from tests.accel.conftest import CFG, tiny_dit_and_inputs

BF16_REL_TOL = 2e-2  # bf16 keeps 8 mantissa bits and accumulates over K (same bound as the acceptance)


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


def test_rope_rotates_the_leading_tokens_only():
    cos, sin = rope_freqs_3d((2, 3, 4), (4, 6, 6))
    x = torch.randn(2, 24, 3, 16)
    ref = apply_rope(x, cos, sin)
    out = apply_rope(x.bfloat16(), cos, sin)
    assert out.dtype == torch.bfloat16 and _rel(out, ref) <= BF16_REL_TOL
    txt = torch.randn(2, 5, 3, 16)
    joint = apply_rope(torch.cat([x, txt], 1), cos, sin)
    torch.testing.assert_close(joint[:, :24], ref, rtol=0, atol=0)
    assert torch.equal(joint[:, 24:], txt)  # tokens past the table (the text) are untouched
    assert torch.equal(apply_rope(x, torch.ones_like(cos), torch.zeros_like(sin)), x)  # position 0: identity


def test_gemm_attention_backend_matches_reference_with_padded_keys(monkeypatch):
    import hyvideo.accel.cpu.attention as gemm  # noqa: PLC0415 - registers "gemm"
    from hyvideo.ops.attention import attention  # noqa: PLC0415

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 70, 3, 16) for _ in range(3))
    key_mask = torch.ones(2, 70, dtype=torch.bool)
    key_mask[1, 50:] = False  # trailing padding
    key_mask[1, 7] = False  # and a hole
    ref = attention(q, k, v, key_mask=key_mask, backend="naive")
    monkeypatch.setattr(gemm, "GEMM_SCORE_ELEMENTS", 20 * 70)  # several query chunks per head
    out = attention(q, k, v, key_mask=key_mask, backend="gemm")
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    qb, kb, vb = (x.bfloat16() for x in (q, k, v))
    assert _rel(attention(qb, kb, vb, key_mask=key_mask, backend="gemm"), ref) <= BF16_REL_TOL
    qg = q.clone().requires_grad_(True)  # with gradients the backend hands over to SDPA: training works
    out = attention(qg, k, v, key_mask=key_mask, backend="gemm")
    out.sum().backward()
    assert qg.grad is not None and torch.isfinite(qg.grad).all()
    torch.testing.assert_close(out.detach(), ref, rtol=1e-5, atol=1e-5)


def test_fused_gelu_linear_and_packed_weights():
    from torch import nn  # noqa: PLC0415

    from hyvideo.accel.cpu.linear import PackedLinear, fused_linear, pack_linear_weights  # noqa: PLC0415

    if not capability.cpu_info().native_bf16:
        pytest.skip("oneDNN bf16 kernels are not native on this CPU (the CPU bf16 paths are off here)")
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


def _bf16_pair():
    model, inp = tiny_dit_and_inputs()
    cast = {k: v.to(torch.bfloat16) if v.is_floating_point() and k != "t" else v for k, v in inp.items()}
    return model, inp, cast


@torch.no_grad()
def test_accelerated_cpu_dit_matches_plain_bf16_and_fp32():
    model, inp, cast = _bf16_pair()
    ref32 = model(**inp)
    plain = copy.deepcopy(model).to(torch.bfloat16)
    ref16 = plain(**cast)
    fast = copy.deepcopy(plain)
    keys = list(fast.state_dict())
    plan = accel.apply(fast, options=accel.AccelOptions(device="cpu"))
    assert list(fast.state_dict()) == keys  # same state dict, loadable strictly
    out = fast(**cast)
    assert out.dtype == torch.bfloat16
    if plan.on("cpu-bf16"):
        assert plan.on("attention=gemm")
        assert _rel(out, ref32) <= BF16_REL_TOL and _rel(out, ref16) <= BF16_REL_TOL, (_rel(out, ref32), _rel(out, ref16))
    else:  # bf16 emulated here: the plain ops, except the portable lean blocks (same math, other rounding)
        assert plan.on("lean-blocks") and not plan.on("attention=gemm")
        assert _rel(out, ref16) <= BF16_REL_TOL, _rel(out, ref16)


@pytest.mark.parametrize("branch", ["isa", "onednn", "compiler", "disabled", "fp32"])
@torch.no_grad()
def test_each_unsupported_branch_gives_the_plain_path(branch, monkeypatch):
    """Force every "not supported" answer of the capability check: the plain path runs, same result."""
    info = capability.cpu_info()
    if branch == "isa":  # an AVX2-only CPU: bf16 emulated
        monkeypatch.setattr(capability, "cpu_info", lambda: dataclasses.replace(
            info, flags=frozenset({"avx2", "fma"}), onednn_bf16=False))
    elif branch == "onednn":
        monkeypatch.setattr(capability, "cpu_info", lambda: dataclasses.replace(info, onednn=False))
    elif branch == "compiler":
        monkeypatch.setattr(capability, "compiler_available", lambda: False)
        from hyvideo.accel.cpu import native  # noqa: PLC0415

        monkeypatch.setattr(native, "_LOADED", None)
    model, _, cast = _bf16_pair()
    if branch == "fp32":
        cast = {k: v.float() if v.is_floating_point() else v for k, v in cast.items()}
    else:
        model = model.to(torch.bfloat16)
    ref = model(**cast)
    plan = accel.apply(model, options=accel.AccelOptions(device="cpu", cpu_paths=branch != "disabled"))
    out = model(**cast)
    if branch == "compiler" and info.native_bf16:  # oneDNN paths still on; only the C++ kernels are off
        assert plan.on("cpu-bf16") and not plan.on("cpu-kernels")
        assert "no C++ compiler" in str(plan)
        assert _rel(out, ref) <= BF16_REL_TOL
        return
    assert not plan.on("cpu-bf16") and plan.on("attention=auto")
    from hyvideo.accel.cpu.dit import CPUDoubleStreamBlock  # noqa: PLC0415

    assert not any(isinstance(m, CPUDoubleStreamBlock) for m in model.modules())
    # the plain ops (the portable lean blocks only reorder the sums): within the dtype's tolerance
    assert _rel(out, ref) <= (1e-5 if branch == "fp32" else BF16_REL_TOL), _rel(out, ref)
    reason = {"isa": "bf16 not native on avx2", "onednn": "without oneDNN", "disabled": "disabled", "fp32": "dtype float32",
              "compiler": "bf16 not native"}[branch]
    assert reason in str(plan), str(plan)


def test_cpu_info_honours_the_onednn_isa_cap(monkeypatch):
    info = capability.cpu_info()
    capped = dataclasses.replace(info, isa_cap="AVX2")
    assert capped.capped and not capped.native_bf16
    assert not dataclasses.replace(info, isa_cap="AVX512_CORE_AMX").capped


@pytest.mark.parametrize("backend", ["auto", "gemm"])
def test_bf16_cpu_training_step_runs(backend):
    """bf16 training on CPU: forward + backward + optimizer step, finite, every parameter gets a gradient."""
    model = HYVideoDiffusionTransformer(**CFG, attn_backend=backend).to(torch.bfloat16).train()
    _, _, cast = _bf16_pair()
    if backend == "gemm":
        import hyvideo.accel.cpu.attention  # noqa: F401, PLC0415
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss = model(**cast).float().square().mean()
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    opt.step()


def test_patch_embed_is_the_strided_conv_with_contiguous_tokens():
    from hyvideo.models.embeddings import PatchEmbed3D

    torch.manual_seed(0)
    emb = PatchEmbed3D((1, 2, 2), 16, 32).double()
    x = torch.randn(2, 16, 3, 8, 6, dtype=torch.float64)
    ref = emb.proj(x).flatten(2).transpose(1, 2)  # the released formulation: [B, L, D], t-major then h, w
    out = emb(x)
    assert out.is_contiguous() and out.shape == ref.shape == (2, 3 * 4 * 3, 32)
    assert torch.allclose(out, ref, rtol=0, atol=1e-12)


@torch.no_grad()
def test_fused_qk_norm_rope_rounds_once_into_the_joint_buffer(monkeypatch):
    from hyvideo.accel.cpu import native  # noqa: PLC0415
    from hyvideo.accel.cpu.dit import fused_norm_rope_joint  # noqa: PLC0415
    from hyvideo.models.norms import RMSNorm  # noqa: PLC0415
    from hyvideo.models.rope import norm_rope_joint  # noqa: PLC0415

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
    fused = fused_norm_rope_joint(parts, torch.bfloat16)
    unfused = norm_rope_joint(parts, torch.bfloat16)
    assert fused.shape == unfused.shape == (2, 29, 3, 16) and fused.dtype == torch.bfloat16
    # one rounding of float32 math on the bf16 inputs (whose own rounding is the same for both paths)
    assert _rel(fused, ref) <= _rel(unfused, ref) <= BF16_REL_TOL, (_rel(fused, ref), _rel(unfused, ref))
