"""MFU inputs (issue 21): the DiT FLOP formula equals what torch's FlopCounterMode counts on a real forward, and
the training log carries samples/s, tokens/s and (on a GPU with a known peak) MFU."""

from __future__ import annotations

import pytest
import torch
import torch.utils.flop_counter as fc

from hyvideo.models.dit import HYVideoDiffusionTransformer
from hyvideo.training import monitor as monitor_mod
from hyvideo.training.flops import DiTFlops, dit_tokens
from hyvideo.training.meta_init import build_on_meta
from tests.training.conftest import ROOT, metrics
from tests.training.conftest import run_tiny_dit as _run

TINY = ROOT / "hyvideo/configs/dit_tiny.json"


def _cpu_sdpa(q, k, v, *args, out_shape=None, **kwargs):
    return fc.sdpa_flop_count(q, k, v)  # CPU's fused SDPA kernel is not in torch's FLOP registry


def _record_monitor_steps(monkeypatch) -> list[dict]:
    """The keyword arguments of every ``Monitor.step`` call (filled as training runs)."""
    seen = []
    real_step = monitor_mod.Monitor.step

    def spy(self, step, scalars, **kw):
        seen.append(kw)
        return real_step(self, step, scalars, **kw)

    monkeypatch.setattr(monitor_mod.Monitor, "step", spy)
    return seen


@pytest.mark.parametrize("overrides", [{}, {"mm_double_blocks_depth": 2, "mm_single_blocks_depth": 3,
                                            "text_refiner_depth": 2, "hidden_size": 64, "heads_num": 4}])
def test_dit_flop_formula_equals_the_flop_counter(overrides):
    dit = HYVideoDiffusionTransformer.from_config(TINY, **overrides)
    cfg = {"patch_size": [1, 2, 2], "use_attention_mask": True}
    b, shape = 2, (2, 16, 3, 8, 6)
    mask = torch.zeros(b, 12, dtype=torch.long)
    mask[:, :7] = 1  # trailing padding in every row: the DiT trims it, so attention runs over 7 text tokens
    img, txt = dit_tokens(cfg, shape, mask)
    assert (img, txt) == (3 * 4 * 3, 7)
    g = torch.Generator().manual_seed(0)
    inputs = (torch.randn(shape, generator=g), torch.tensor([500.0, 300.0]), torch.randn(b, 12, 32, generator=g),
              mask, torch.randn(b, 32, generator=g), torch.tensor([6000.0, 6000.0]))
    with fc.FlopCounterMode(display=False, custom_mapping={
            torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa}) as counter:
        dit(*inputs)
    counted = counter.get_flop_counts()["Global"]
    assert any("attention" in str(op) for op in counted)  # attention was counted, not only the GEMMs
    formula = DiTFlops.of(dit)
    assert formula.forward(b, img, txt) == counter.get_total_flops()
    assert formula.train_step(b, img, txt) == 3 * counter.get_total_flops()
    assert DiTFlops.of(build_on_meta(lambda: HYVideoDiffusionTransformer.from_config(TINY, **overrides))) == formula


def test_dit_tokens_without_attention_mask_counts_every_text_column():
    mask = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]])
    assert dit_tokens({"patch_size": [1, 2, 2]}, (1, 16, 2, 4, 4), mask) == (8, 2)
    assert dit_tokens({"patch_size": [1, 2, 2], "use_attention_mask": False}, (1, 16, 2, 4, 4), mask) == (8, 4)


def test_training_log_reports_throughput_and_mfu_on_a_gpu(tmp_path, latent_cache, monkeypatch):
    cpu = _run(tmp_path / "cpu", f"data.latent_cache={latent_cache}", "run.max_steps=2")
    rows = metrics(cpu["out_dir"])
    assert all(rows[s]["samples_per_s"] > 0 and rows[s]["tokens_per_s"] > 0 for s in (1, 2))
    assert "mfu" not in rows[2]  # CPU: no peak FLOP/s to divide by
    peak = 1e12
    monkeypatch.setattr(monitor_mod, "peak_flops", lambda: peak)  # as on a GPU with a known peak
    seen = _record_monitor_steps(monkeypatch)
    gpu = _run(tmp_path / "gpu", f"data.latent_cache={latent_cache}", "run.max_steps=2", "run.log_every=1")
    row, kw = metrics(gpu["out_dir"])[2], seen[1]
    assert kw["flops"] > 0
    # samples_per_s = samples / dt and mfu = flops / dt / (world * peak): one dt, so their ratio is exact
    assert row["mfu"] == pytest.approx(row["samples_per_s"] * kw["flops"] / (kw["samples"] * peak), rel=1e-9)


def test_meta_flop_counter_equals_a_real_forward_of_the_vae():
    import json

    from hyvideo.training.flops import MetaFlopCounter
    from hyvideo.training.vae_objective import VAEReconstructor, latent_shape_of
    from hyvideo.vae.autoencoder import AutoencoderKLCausal3D

    cfg = json.loads((ROOT / "hyvideo/configs/vae_tiny.json").read_text())
    x_shape = (2, 3, 5, 32, 24)
    eps_shape = latent_shape_of(cfg, x_shape)
    real = VAEReconstructor(AutoencoderKLCausal3D.from_config(cfg))
    with torch.no_grad(), fc.FlopCounterMode(display=False, custom_mapping={
            torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa}) as counter:
        real(torch.rand(x_shape) * 2 - 1, torch.randn(eps_shape))
    meta = MetaFlopCounter(lambda: VAEReconstructor(AutoencoderKLCausal3D.from_config(cfg)))
    assert meta.forward(x_shape, eps_shape) == counter.get_total_flops() > 0
    assert meta.train_step(x_shape, eps_shape) == 3 * counter.get_total_flops()
    assert meta.forward((1, *x_shape[1:]), (1, *eps_shape[1:])) * 2 == counter.get_total_flops()  # per shape


def test_vae_training_log_reports_mfu_on_a_gpu(tmp_path, manifest, monkeypatch):
    from tests.training.conftest import run_tiny_vae

    monkeypatch.setattr(monitor_mod, "peak_flops", lambda: 1e12)
    seen = _record_monitor_steps(monkeypatch)
    out = run_tiny_vae(tmp_path, f"data.manifest={manifest}", "run.max_steps=1", "run.log_every=1")
    row, kw = metrics(out["out_dir"])[1], seen[0]
    assert kw["flops"] > 0 and row["tokens_per_s"] > 0
    assert row["mfu"] == pytest.approx(row["samples_per_s"] * kw["flops"] / (kw["samples"] * 1e12), rel=1e-9)
