"""First-block step cache: exact when it never skips, skips when the first block's residual repeats."""

from __future__ import annotations

import pytest
import torch

from hyvideo import HYVideoDiffusionTransformer
from hyvideo.accel.step_cache import FirstBlockCache, disable_step_cache, enable_step_cache
from hyvideo.diffusion.flow_matching import get_sigmas
from hyvideo.diffusion.sampler import euler_sample

CFG = dict(in_channels=4, out_channels=4, hidden_size=32, heads_num=2, rope_dim_list=[4, 6, 6],
           mm_double_blocks_depth=2, mm_single_blocks_depth=2, text_states_dim=12, text_states_dim_2=8,
           text_refiner_depth=1)


@pytest.fixture
def setup():
    model = HYVideoDiffusionTransformer(**CFG).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    cond = dict(text_states=torch.randn(1, 5, 12), text_mask=torch.tensor([[1, 1, 1, 1, 0]]),
                text_states_2=torch.randn(1, 8), guidance=torch.tensor([5000.0]))
    return model, cond, torch.randn(1, 4, 2, 8, 8)


def _sample(model, cond, x, steps=8):
    def fn(x, t):
        return model(x, t, cond["text_states"], cond["text_mask"], cond["text_states_2"], cond["guidance"])
    return euler_sample(fn, x, get_sigmas(steps, 5.0), progress=False)


@torch.no_grad()
def test_threshold_zero_is_exact_and_counts_evaluations(setup):
    model, cond, x = setup
    ref = _sample(model, cond, x)
    cache = enable_step_cache(model, threshold=0.0)
    torch.testing.assert_close(_sample(model, cond, x), ref, rtol=1e-6, atol=1e-6)
    assert (cache.num_full, cache.num_skipped) == (8, 0)


@torch.no_grad()
def test_repeated_step_is_skipped_and_reuses_the_residual(setup):
    model, cond, x = setup
    t = torch.tensor([600.0])
    full = model(x, t, **cond)
    cache = enable_step_cache(model, threshold=0.01)
    first = model(x, t, **cond)
    again = model(x, t, **cond)  # identical first-block residual -> skipped
    assert (cache.num_full, cache.num_skipped) == (1, 1)
    torch.testing.assert_close(first, full, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(again, full, rtol=1e-5, atol=1e-5)
    other = model(x * 3 + 1, torch.tensor([100.0]), **cond)  # very different input -> computed
    assert cache.num_full == 2
    cache.reset()
    assert (cache.num_full, cache.num_skipped) == (0, 0)
    disable_step_cache(model)
    torch.testing.assert_close(model(x * 3 + 1, torch.tensor([100.0]), **cond), other, rtol=1e-6, atol=1e-6)


@torch.no_grad()
def test_larger_threshold_skips_more_steps(setup):
    model, cond, x = setup
    full = []
    for thr in (0.02, 0.3, 10.0):
        cache = enable_step_cache(model, threshold=thr)
        out = _sample(model, cond, x, steps=8)
        assert cache.num_full + cache.num_skipped == 8
        full.append(cache.num_full)
        assert torch.isfinite(out).all()
    assert full[0] >= full[1] >= full[2] == 1  # threshold 10: only the first step is computed
    assert full[0] > full[2]
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        FirstBlockCache(-1.0)


def test_cache_statistics_make_no_float32_copies_of_the_residuals():
    """The step's statistics accumulate in float32 without float32 copies of the bf16 [B, L_img, D] residuals
    (at 720p that was ~2.9 GB of temporaries per step); the cached residuals stay in the model's dtype."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class LargeFloat32(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in (out if isinstance(out, (tuple, list)) else (out,)):
                if isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.numel() > 2:
                    self.seen.append((str(func), tuple(t.shape)))
            return out

    torch.manual_seed(0)
    r0, r1, after, last = (torch.randn(2, 300, 32, dtype=torch.bfloat16) for _ in range(4))
    cache = FirstBlockCache(0.5)
    with LargeFloat32() as mode:
        cache.update(r0, after, last)
        stats = cache.stats(r1)
        skipped = cache.skip(after)
    assert mode.seen == []
    assert stats.dtype == torch.float32 and cache.rest_residual.dtype == torch.bfloat16
    ref = torch.stack([(r1.double() - r0.double()).abs().sum(), r0.double().abs().sum()])
    torch.testing.assert_close(stats.double(), ref, rtol=1e-2, atol=0)  # bf16 differences, fp32 sums
    torch.testing.assert_close(skipped, after + (last - after), rtol=0, atol=0)
