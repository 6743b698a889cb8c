"""torchrun --nproc_per_node 2 on CPU (gloo): FSDP2 and Ulysses sequence parallel give the losses of a 1-process
run with the same global batch (within 1e-4), for train_dit.py and train_vae.py."""

from __future__ import annotations

import importlib.util

import pytest

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


def test_vae_fsdp_two_ranks_match_one_rank(tmp_path, manifest):
    common = [f"data.manifest={manifest}", "run.max_steps=2", "run.ckpt_every=0", "loss.disc_start=1"]
    torchrun("train_vae.py", ["--config", TINY_VAE, *_sets(*common, f"run.out_dir={tmp_path / 'two'}")])
    one = train_vae.main(["--config", TINY_VAE, *_sets(*common, f"run.out_dir={tmp_path / 'one'}",
                                                       "optim.grad_accum=2")])
    two = metrics(tmp_path / "two")
    _compare(two, one["losses"], steps=2)
    assert two[2]["loss_d"] > 0 and two[2]["adv"] != 0  # the discriminator ran on both ranks (step 2)
