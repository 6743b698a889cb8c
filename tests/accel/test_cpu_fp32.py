"""The CPU float32 inference path (oneDNN-packed linears) and the portable lean blocks: same results as the plain
model within float32 rounding, same state dict, each "off" branch gives the plain ops."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from hyvideo import accel
from hyvideo.accel import capability
from hyvideo.accel.cpu.linear import PackedLinear, fused_linear, pack_linear_weights
from hyvideo.accel.lean_blocks import LeanGeluMLP, lean_norm_rope_joint
from hyvideo.models.norms import RMSNorm
from hyvideo.models.rope import norm_rope_joint, rope_freqs_3d
from tests.accel.conftest import tiny_dit_and_inputs

FP32_REL_TOL = 1e-5  # summation order and the split GEMMs only
needs_packing = pytest.mark.skipif(not capability.cpu_info().onednn_fp32_packing,
                                   reason="oneDNN cannot pack float32 weights in this PyTorch build")


def _rel(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def _model_and_inputs():
    torch.manual_seed(0)
    return tiny_dit_and_inputs()


@needs_packing
@torch.no_grad()
def test_fp32_packed_path_matches_the_plain_model():
    model, inp = _model_and_inputs()
    ref = model(**inp)
    fast = copy.deepcopy(model)
    keys = list(fast.state_dict())
    plan = accel.apply(fast, options=accel.AccelOptions(device="cpu"))
    assert plan.on("cpu-fp32-packed") and plan.on("lean-blocks") and not plan.on("cpu-bf16"), str(plan)
    assert list(fast.state_dict()) == keys  # loadable strictly
    assert sum(type(m) is PackedLinear for m in fast.modules()) > 20
    out = fast(**inp)
    assert _rel(out, ref) <= FP32_REL_TOL, _rel(out, ref)
    assert any(m.__dict__.get("_packed_cache") for m in fast.modules())  # the packed weights did run


@pytest.mark.parametrize("branch", ["no-packing", "no-memory", "disabled"])
@torch.no_grad()
def test_fp32_path_off_branches_give_the_plain_linears(branch, monkeypatch):
    info = capability.cpu_info()
    if branch == "no-packing":
        monkeypatch.setattr(capability, "cpu_info", lambda: dataclasses.replace(info, onednn_fp32_packing=False))
    elif branch == "no-memory":
        monkeypatch.setattr(accel, "_available_memory", lambda: 1 << 20)
    model, inp = _model_and_inputs()
    ref = model(**inp)
    plan = accel.apply(model, options=accel.AccelOptions(device="cpu", cpu_paths=branch != "disabled"))
    assert not plan.on("cpu-fp32-packed") and plan.on("lean-blocks")
    assert not any(type(m) is PackedLinear for m in model.modules())
    reason = {"no-packing": "cannot pack float32", "no-memory": "MiB available", "disabled": "disabled"}[branch]
    assert reason in str(plan), str(plan)
    assert _rel(model(**inp), ref) <= FP32_REL_TOL


@needs_packing
@torch.no_grad()
def test_packed_column_blocks_sum_to_the_linear_of_the_concatenation():
    lin = nn.Linear(48, 20)
    a, b = torch.randn(2, 7, 16), torch.randn(2, 7, 32)
    ref = lin(torch.cat([a, b], -1))
    assert pack_linear_weights(lin) == 1 and type(lin) is PackedLinear
    out = fused_linear(b, lin, cols=(16, 48)).add_(fused_linear(a, lin, cols=(0, 16), bias=False))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fused_linear(a.new_ones(3, 48), lin, rows=(4, 9)),
                               nn.functional.linear(a.new_ones(3, 48), lin.weight[4:9], lin.bias[4:9]))
    assert set(lin.__dict__["_packed_cache"]) == {(None, (16, 48)), (None, (0, 16)), ((4, 9), None)}
    with pytest.raises(ValueError, match="cols="):
        fused_linear(a, nn.Sequential(lin), cols=(0, 16))


@torch.no_grad()
def test_lean_norm_rope_joint_matches_the_plain_function():
    torch.manual_seed(0)
    cos, sin = rope_freqs_3d((2, 3, 4), [4, 6, 6], 256.0)  # 24 rotated tokens, D_h 16
    norms = [RMSNorm(16, eps=1e-6), RMSNorm(16, eps=1e-6)]
    for n in norms:
        n.weight.normal_()
    img, txt = torch.randn(2, 24, 4, 16), torch.randn(2, 5, 4, 16)
    joint = torch.randn(2, 29, 4, 16)  # a single-stream block: rope over the first 24 of 29 tokens
    for parts in ([(norms[0], img, (cos, sin)), (norms[1], txt, None)], [(norms[0], joint, (cos, sin))]):
        ref = norm_rope_joint(parts, torch.float32)
        out = lean_norm_rope_joint(parts, torch.float32)
        assert out.shape == ref.shape and out.is_contiguous()
        torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    bf16 = [(norms[0], img.bfloat16(), (cos, sin))]  # other dtypes: the plain function
    assert torch.equal(lean_norm_rope_joint(bf16, torch.bfloat16), norm_rope_joint(bf16, torch.bfloat16))


def test_lean_gelu_mlp_is_in_place_only_without_gradients():
    from hyvideo.models.token_refiner import MLP  # noqa: PLC0415

    torch.manual_seed(0)
    mlp = MLP(8, 32, nn.GELU(approximate="tanh"))
    x = torch.randn(3, 8, requires_grad=True)
    ref = mlp(x)
    mlp.__class__ = LeanGeluMLP
    fc1_out = []
    mlp.fc1.register_forward_hook(lambda _m, _i, y: fc1_out.append((y, y.detach().clone())))
    out = mlp(x)  # gradients on: the out-of-place GELU leaves fc1's output as it was; backward works
    out.sum().backward()
    assert x.grad is not None and torch.equal(out, ref)
    assert torch.equal(fc1_out[-1][0], fc1_out[-1][1])
    with torch.no_grad():
        torch.testing.assert_close(mlp(x), ref.detach())
    y, pre = fc1_out[-1]  # no gradients: the GELU overwrote fc1's output in place
    torch.testing.assert_close(y, nn.functional.gelu(pre, approximate="tanh"))
    assert not torch.equal(y, pre)
