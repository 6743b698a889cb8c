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
