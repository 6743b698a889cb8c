"""train_vae.py in one process: exact resume with the discriminator on, export in the released VAE layout."""

from __future__ import annotations

import torch

from tests.training.conftest import run_tiny_vae as _run


def test_vae_resume_is_exact_and_export_loads(tmp_path, manifest):
    from hyvideo.checkpoint.io import load_vae

    common = [f"data.manifest={manifest}", "run.max_steps=3", "run.ckpt_every=0", "loss.disc_start=1"]
    full = _run(tmp_path / "full", *common)
    _run(tmp_path / "split", *common, "run.stop_after=1")
    resumed = _run(tmp_path / "split", *common)["losses"]
    assert sorted(resumed) == [2, 3]
    for step in (2, 3):  # the discriminator trains from step 2 and is restored exactly
        assert resumed[step] == full["losses"][step], step
    vae = load_vae(tmp_path / "full/export/vae", dtype=torch.float32)
    x = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    assert vae(x).sample.shape == x.shape
