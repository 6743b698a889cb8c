"""torchrun --nproc_per_node 2 on CPU (gloo): FSDP2 and Ulysses sequence parallel give the losses of a 1-process
run with the same global batch (within 1e-4), for train_dit.py and train_vae.py; a VAE checkpoint of 2 ranks
resumes at 1 (the DiT's resharding tests are in test_scale.py)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

import train_dit
import train_vae
from tests.training.conftest import ROOT, metrics, torchrun

pytestmark = pytest.mark.dist
TINY, TINY_VAE = str(ROOT / "configs/train/tiny.yaml"), str(ROOT / "configs/train/tiny_vae.yaml")
STEPS = 3


def _sets(*items):
    return [a for s in items for a in ("--set", s)]


def _compare(two: dict, one: dict, steps: int = STEPS):
    for step in range(1, steps + 1):
        assert abs(two[step]["loss"] - one[step]) < 1e-4, (step, two[step]["loss"], one[step])


def test_dit_fsdp_two_ranks_match_one_rank(tmp_path, latent_cache):
    common = [f"data.latent_cache={latent_cache}", f"run.max_steps={STEPS}", "run.ckpt_every=0"]
    torchrun("train_dit.py", ["--config", TINY, *_sets(*common, f"run.out_dir={tmp_path / 'two'}")])
    # same global batch on one rank: 2 accumulation micro-steps of the same micro-batch size
    one = train_dit.main(["--config", TINY, *_sets(*common, f"run.out_dir={tmp_path / 'one'}", "optim.grad_accum=2")])
    _compare(metrics(tmp_path / "two"), one["losses"])


@pytest.mark.skipif(importlib.util.find_spec("hyvideo.parallel.sequence_parallel") is None,
                    reason="hyvideo/parallel/sequence_parallel.py (performance engineer) is not present")
def test_dit_sequence_parallel_degree_2_matches_one_rank(tmp_path, latent_cache):
    common = [f"data.latent_cache={latent_cache}", f"run.max_steps={STEPS}", "run.ckpt_every=0"]
    torchrun("train_dit.py", ["--config", TINY, *_sets(*common, f"run.out_dir={tmp_path / 'sp'}",
                                                         "parallel.sp_degree=2")])
    one = train_dit.main(["--config", TINY, *_sets(*common, f"run.out_dir={tmp_path / 'one'}")])
    _compare(metrics(tmp_path / "sp"), one["losses"])


def test_vae_fsdp_two_ranks_match_one_rank_and_resume_at_one(tmp_path, manifest, monkeypatch):
    """Step 1 on 2 ranks equals 1 rank; its DCP checkpoint (VAE, EMA, stepped discriminator) resumes at world size
    1 on the uninterrupted run's loss (within 1e-5), and the export is bit for bit the EMA the run holds."""
    from hyvideo.training import checkpointing

    common = [f"data.manifest={manifest}", "run.max_steps=2", "run.ckpt_every=0", "loss.disc_start=0"]
    torchrun("train_vae.py", ["--config", TINY_VAE, *_sets(*common, f"run.out_dir={tmp_path / 'two'}",
                                                           "run.stop_after=1")])
    one = train_vae.main(["--config", TINY_VAE, *_sets(*common, f"run.out_dir={tmp_path / 'one'}",
                                                       "optim.grad_accum=2")])
    two = metrics(tmp_path / "two")
    _compare(two, one["losses"], steps=1)
    assert two[1]["loss_d"] > 0 and two[1]["adv"] != 0  # the discriminator ran on both ranks
    state = json.loads((tmp_path / "two" / "checkpoints" / "step_00000001" / "train_state.json").read_text())
    assert state["world_size"] == 2 and state["optimizers_stepped"] == {"model": True, "discriminator": True}
    held, real_save = {}, checkpointing.Checkpointer.save

    def capture(self, step, *, ema, **kw):
        held["ema"] = ema.full_state_dict()
        return real_save(self, step, ema=ema, **kw)

    monkeypatch.setattr(checkpointing.Checkpointer, "save", capture)
    resumed = train_vae.main(["--config", TINY_VAE, *_sets(*common, f"run.out_dir={tmp_path / 'two'}",
                                                           "optim.grad_accum=2")])["losses"]
    assert sorted(resumed) == [2] and abs(resumed[2] - one["losses"][2]) < 1e-5, (resumed, one["losses"])
    exported = torch.load(tmp_path / "two" / "export" / "vae" / "pytorch_model.pt", weights_only=True)["state_dict"]
    want = {k.removeprefix("vae."): v for k, v in held["ema"].items()}
    assert exported.keys() == want.keys() and all(torch.equal(exported[k], v) for k, v in want.items())
