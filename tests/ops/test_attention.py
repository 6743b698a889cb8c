"""The attention entry point: backends agree, a broken flash-attn falls back at import with one warning."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from hyvideo.ops.attention import Attention, attention, backends


def test_backends_agree_with_padded_keys():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 9, 2, 8) for _ in range(3))
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[0, 6:] = False
    ref = attention(q, k, v, key_mask=mask, backend="naive")
    torch.testing.assert_close(attention(q, k, v, key_mask=mask, backend="sdpa"), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(Attention("sdpa")(q, k, v, mask), ref, rtol=1e-5, atol=1e-5)
    assert attention(q, k, v).shape == (2, 9, 16)
    with pytest.raises(ValueError, match="unknown attention backend 'nope'"):
        attention(q, k, v, backend="nope")
    assert {"auto", "sdpa", "flash", "naive"} <= set(backends())
    assert dict(Attention().named_parameters()) == {}  # no state-dict keys


def test_broken_flash_attn_falls_back_at_import_with_one_warning(tmp_path):
    pkg = tmp_path / "flash_attn"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('flash_attn_2_cuda.so: undefined symbol: _ZN3c10...')\n")
    code = ("import logging; logging.basicConfig(level=logging.WARNING); import torch; "
            "import hyvideo.ops.attention as a; q = torch.randn(1, 4, 2, 8); "
            "print(a._FLASH is None, tuple(a.attention(q, q, q).shape))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True (1, 4, 16)"
    assert r.stderr.count("flash-attn is installed but failed to import") == 1
    assert "undefined symbol" in r.stderr


def test_sdpa_with_uneven_padding_runs_unmasked_per_sample(monkeypatch):
    """Trailing padding of different lengths: per-sample calls without a mask (the fused kernels' path), same
    valid outputs as the masked reference; a non-prefix mask keeps the masked call."""
    import torch.nn.functional as F

    calls = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention",
                        lambda *a, attn_mask=None, **k: calls.append(attn_mask) or real(*a, attn_mask=attn_mask, **k))
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 10, 2, 8) for _ in range(3))
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0, 7:] = False  # sample 0: 7 valid keys, sample 1: 10
    ref = attention(q, k, v, key_mask=mask, backend="naive")
    out = attention(q, k, v, key_mask=mask, backend="sdpa")
    assert len(calls) == 2 and all(m is None for m in calls)
    torch.testing.assert_close(out[0, :7], ref[0, :7], rtol=1e-5, atol=1e-5)  # valid queries
    torch.testing.assert_close(out[1], ref[1], rtol=1e-5, atol=1e-5)
    hole = mask.clone()
    hole[1, 3] = False  # not a prefix: one masked call
    calls.clear()
    torch.testing.assert_close(attention(q, k, v, key_mask=hole, backend="sdpa")[1],
                               attention(q, k, v, key_mask=hole, backend="naive")[1], rtol=1e-5, atol=1e-5)
    assert len(calls) == 1 and calls[0] is not None


def _fake_flash_attn(calls):
    """flash-attn's two entry points in float32 torch (the naive backend), counting their calls."""
    from types import SimpleNamespace

    def naive(q, k, v):
        return attention(q, k, v, backend="naive").unflatten(-1, q.shape[-2:])

    def dense(q, k, v):
        calls["dense"] += 1
        return naive(q, k, v)

    def varlen(q, k, v, cu_q, cu_k, max_q, max_k):
        calls["varlen"] += 1
        assert int((cu_q[1:] - cu_q[:-1]).max()) == max_q and int((cu_k[1:] - cu_k[:-1]).max()) == max_k
        return torch.cat([naive(q[a:b][None], k[c:d][None], v[c:d][None])[0]
                          for a, b, c, d in zip(cu_q[:-1], cu_q[1:], cu_k[:-1], cu_k[1:])])

    return SimpleNamespace(flash_attn_func=dense, flash_attn_varlen_func=varlen)


@torch.no_grad()
def test_flash_path_unpads_once_per_forward_and_runs_dense_without_padding(monkeypatch):
    """cu_seqlens / max_seqlen (host syncs) are computed once per DiT forward, not per block; a batch without
    padded text runs the dense kernel; a new mask of the same shape is never served stale unpadding indices."""
    import hyvideo.ops.attention as attn
    from hyvideo import HYVideoDiffusionTransformer

    torch.manual_seed(0)
    dit = HYVideoDiffusionTransformer(in_channels=4, out_channels=4, hidden_size=32, heads_num=2,
                                      rope_dim_list=[4, 6, 6], mm_double_blocks_depth=2, mm_single_blocks_depth=2,
                                      text_states_dim=12, text_states_dim_2=8, text_refiner_depth=1).eval()
    x, t = torch.randn(2, 4, 2, 4, 4), torch.tensor([900.0, 300.0])
    txt, pooled = torch.randn(2, 6, 12), torch.randn(2, 8)
    g = torch.tensor([6000.0, 4000.0])
    masks = [torch.tensor([[1] * 6, [1] * 4 + [0] * 2]), torch.tensor([[1] * 5 + [0], [1] * 2 + [0] * 4])]
    refs = [dit(x, t, txt, m, pooled, g) for m in masks + [torch.ones(2, 6, dtype=torch.long)]]  # SDPA on CPU

    calls = {"dense": 0, "varlen": 0, "unpad": 0}
    real_info = attn._MaskInfo
    monkeypatch.setattr(attn, "_FLASH", _fake_flash_attn(calls))
    monkeypatch.setattr(attn, "flash_usable", lambda q: True)
    monkeypatch.setattr(attn, "_MaskInfo", lambda *a: calls.__setitem__("unpad", calls["unpad"] + 1) or real_info(*a))
    for i, m in enumerate(masks):
        out = dit(x, t, txt, m, pooled, g)
        assert calls == {"dense": 0, "varlen": 4 * (i + 1), "unpad": i + 1}  # 4 blocks, one unpadding each forward
        torch.testing.assert_close(out, refs[i], rtol=1e-4, atol=1e-4)
    out = dit(x, t, txt, torch.ones(2, 6, dtype=torch.long), pooled, g)
    assert calls == {"dense": 4, "varlen": 8, "unpad": 2}  # nothing padded: dense flash, no unpadding
    torch.testing.assert_close(out, refs[2], rtol=1e-4, atol=1e-4)


def test_unpadding_is_not_served_stale_for_a_new_mask_at_the_same_address():
    """A freed key mask's address can be reused by the next batch's mask (same shape, fresh version counter):
    the cache must recompute, not return the previous batch's cu_seqlens (silently wrong attention)."""
    from hyvideo.ops.attention import _unpad

    storage = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool).untyped_storage()
    first = torch.empty(0, dtype=torch.bool).set_(storage, 0, (2, 5))
    assert _unpad(first).cu_seqlens.tolist() == [0, 3, 8]
    storage.copy_(torch.tensor([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool).untyped_storage())
    second = torch.empty(0, dtype=torch.bool).set_(storage, 0, (2, 5))  # same data_ptr, shape, _version
    assert second.data_ptr() == first.data_ptr() and second._version == first._version
    assert _unpad(second).cu_seqlens.tolist() == [0, 1, 3] and _unpad(second).max_len == 2
