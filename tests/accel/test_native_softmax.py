"""The C++ in-place bf16 softmax of the "gemm" attention backend (hyvideo/ops/csrc/softmax.cpp)."""

from __future__ import annotations

import pytest
import torch

import hyvideo.accel.cpu.attention as attn
from hyvideo.accel.cpu import native


@pytest.fixture
def kernels(monkeypatch):
    monkeypatch.delenv(native.ENV, raising=False)
    monkeypatch.setattr(native, "_LOADED", native._LOADED)  # restored after the test
    if not native.load():
        pytest.skip("hyvideo's C++ CPU kernels could not be built here (no compiler or ninja)")


@pytest.mark.parametrize("rows,n,ld", [(37, 1283, 1283), (5, 1, 1), (16, 17, 40)])
def test_softmax_in_place_equals_torch_softmax(kernels, rows, n, ld):
    g = torch.Generator().manual_seed(n)
    base = (torch.randn(rows, ld, generator=g) * 4).bfloat16()
    x = base[:, :n]  # ld > n: rows of a wider buffer, as a query chunk's scores can be
    ref = x.softmax(-1)  # float32 math on bf16 input, rounded once to bf16
    out = attn.softmax_(x)
    assert out.data_ptr() == x.data_ptr()  # in place
    assert torch.equal(base[:, n:], (torch.randn(rows, ld, generator=torch.Generator().manual_seed(n)) * 4)
                       .bfloat16()[:, n:])  # the rest of the buffer untouched
    # the same float32 softmax up to the last bit of the bf16 result: <= 1 bf16 ulp of each value
    assert ((out.float() - ref.float()).abs() <= ref.float() * 2**-7 + 1e-30).all()
    torch.testing.assert_close(out.float().sum(-1), torch.ones(rows), atol=n * 2**-8, rtol=0)


def test_gemm_attention_with_the_kernel_matches_the_pytorch_softmax(kernels, monkeypatch):
    torch.manual_seed(0)
    q, k, v = ((torch.randn(2, 70, 3, 16) * 2).bfloat16() for _ in range(3))
    key_mask = torch.ones(2, 70, dtype=torch.bool)
    key_mask[1, 50:] = False
    out = attn.attention(q, k, v, key_mask=key_mask, backend="gemm")
    monkeypatch.setattr(native, "_LOADED", False)  # the same backend with Tensor.softmax
    ref = attn.attention(q, k, v, key_mask=key_mask, backend="gemm")
    assert ((out.float() - ref.float()).abs().max() / ref.float().abs().max()).item() <= 2**-7


def test_softmax_falls_back_without_the_kernels(monkeypatch):
    monkeypatch.setattr(native, "_LOADED", False)
    x = torch.randn(3, 9).bfloat16()
    out = attn.softmax_(x)
    assert out.data_ptr() != x.data_ptr() and torch.equal(out, x.softmax(-1))


def test_softmax_keeps_autograd(kernels):
    x = torch.randn(4, 9).bfloat16().requires_grad_()
    out = attn.softmax_(x * 1.0)
    assert out.requires_grad
    out[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
