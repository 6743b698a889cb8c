"""train_dit.py in one process: exact resume, export to the sample_video.py layout, stage chaining."""

from __future__ import annotations

import pytest
import torch

from tests.training.conftest import run_tiny_dit as _run


def test_kill_and_resume_continues_the_same_loss_curve(tmp_path, latent_cache):
    common = [f"data.latent_cache={latent_cache}", "run.max_steps=5", "run.ckpt_every=0"]
    full = _run(tmp_path / "full", *common)["losses"]
    first = _run(tmp_path / "split", *common, "run.stop_after=2")
    assert first["last_step"] == 2 and sorted(first["losses"]) == [1, 2]
    assert not (tmp_path / "split" / "export").exists()  # stopped early: no export yet
    resumed = _run(tmp_path / "split", *common)["losses"]  # run.resume=auto picks step_00000002.pt
    assert sorted(resumed) == [3, 4, 5]
    for step in (3, 4, 5):
        assert resumed[step] == full[step], (step, resumed[step], full[step])  # exact in fp32 on CPU
    a = torch.load(tmp_path / "full/export/dit.pt", weights_only=True)
    b = torch.load(tmp_path / "split/export/dit.pt", weights_only=True)
    for key in ("module", "ema"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])


def test_export_loads_in_sample_video_layout_and_next_stage_starts_from_it(tmp_path, manifest):
    from hyvideo.checkpoint.io import load_dit

    # on-the-fly latents and text (frozen tiny VAE + tiny text encoders), 2 steps
    _run(tmp_path / "s1", f"data.manifest={manifest}", "run.max_steps=2", "optim.ema_decay=0")
    export = tmp_path / "s1/export/dit.pt"
    assert (tmp_path / "s1/export/config.json").is_file()
    dit = load_dit(export, dtype=torch.float32)  # what sample_video.py --dit-weight does
    sd = torch.load(export, weights_only=True)["module"]
    assert all(torch.equal(dit.state_dict()[k], v) for k, v in sd.items())
    # next stage: init_from the previous stage, one step at lr 1e-12 -> the exported weights (Adam moves each
    # weight by about lr), not a fresh init
    _run(tmp_path / "s2", f"data.manifest={manifest}", "run.max_steps=1", f"run.init_from={export}",
         "optim.lr=1e-12", "optim.ema_decay=0", "data.num_frames=1")
    sd2 = torch.load(tmp_path / "s2/export/dit.pt", weights_only=True)["module"]
    assert all(torch.allclose(sd2[k], v, rtol=0, atol=1e-10) for k, v in sd.items())


def test_unknown_engine_and_missing_data_are_clear(tmp_path):
    from hyvideo.training.config import ConfigError

    with pytest.raises(ConfigError, match="deepspeed.*not supported"):
        _run(tmp_path, "data.manifest=x.jsonl", "parallel.engine=deepspeed")
    with pytest.raises(ConfigError, match="set data.manifest"):
        _run(tmp_path)
