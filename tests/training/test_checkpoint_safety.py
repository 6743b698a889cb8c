"""Checkpoints and weight files that must not be trusted (issue 15): pickle payloads are refused without running,
a zero-byte or truncated newest checkpoint falls back to the previous one on the same loss curve, and atomic
saves fsync the file and its folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import train_dit
import train_vae
from hyvideo.training.cli import run_cli
from tests.training.conftest import ROOT

TINY, TINY_VAE = str(ROOT / "configs/train/tiny.yaml"), str(ROOT / "configs/train/tiny_vae.yaml")


class Payload:
    """Unpickling this runs ``touch <marker>`` (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _sets(*items):
    return [a for s in items for a in ("--set", s)]


def _newest(out_dir: Path) -> Path:
    return sorted((out_dir / "checkpoints").glob("step_*"))[-1]


def _corrupt(ckpt: Path, how: str) -> None:
    """Zero or halve the newest checkpoint's largest file (a single .pt, or a shard of a checkpoint folder)."""
    target = ckpt if ckpt.is_file() else max((p for p in ckpt.iterdir() if p.is_file()), key=lambda p: p.stat().st_size)
    data = target.read_bytes()
    target.write_bytes(b"" if how == "zero" else data[: len(data) // 2])


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, latent_cache):
    out = tmp_path_factory.mktemp("full") / "run"
    return train_dit.main(["--config", TINY, *_sets(f"data.latent_cache={latent_cache}", f"run.out_dir={out}",
                                                   "run.max_steps=4", "run.ckpt_every=1")])["losses"]


@pytest.mark.parametrize("how", ["zero", "truncated"])
def test_unreadable_newest_checkpoint_falls_back_to_the_previous(tmp_path, latent_cache, full_run, how, caplog):
    common = [f"data.latent_cache={latent_cache}", f"run.out_dir={tmp_path}", "run.max_steps=4", "run.ckpt_every=1"]
    train_dit.main(["--config", TINY, *_sets(*common, "run.stop_after=3")])
    newest = _newest(tmp_path)
    assert newest.name.startswith("step_00000003")
    _corrupt(newest, how)
    resumed = train_dit.main(["--config", TINY, *_sets(*common)])["losses"]
    assert sorted(resumed) == [3, 4]  # resumed from step 2
    assert all(resumed[s] == full_run[s] for s in (3, 4)), (resumed, full_run)
    assert f"skipping {newest.name}" in caplog.text


def test_pickle_payload_in_the_newest_checkpoint_is_refused(tmp_path, latent_cache, capsys):
    common = [f"data.latent_cache={latent_cache}", f"run.out_dir={tmp_path}", "run.max_steps=3", "run.ckpt_every=1"]
    train_dit.main(["--config", TINY, *_sets(*common, "run.stop_after=1")])
    marker = tmp_path / "PAYLOAD_RAN"
    evil = tmp_path / "checkpoints" / "step_00000002.pt"
    torch.save({"step": 2, "model": {"w": torch.zeros(1)}, "sampler": {"step": 2}, "rng": Payload(marker)}, evil)
    rc = run_cli(train_dit.main, ["--config", TINY, *_sets(*common)], "train_dit.py")
    err = capsys.readouterr().err
    assert rc == 2 and "refusing to load" in err and "step_00000002.pt" in err and "posix.system" in err
    assert not marker.exists()


@pytest.mark.parametrize("trainer, key", [(train_dit, "run.init_from"), (train_vae, "model.init_weights")])
def test_pickle_payload_weight_file_is_refused(tmp_path, manifest, capsys, trainer, key):
    marker = tmp_path / "PAYLOAD_RAN"
    evil = tmp_path / "weights.pt"
    torch.save({"module": {"img_in.proj.weight": torch.zeros(1)}, "extra": Payload(marker)}, evil)
    config = TINY if trainer is train_dit else TINY_VAE
    rc = run_cli(trainer.main, ["--config", config, *_sets(f"data.manifest={manifest}", f"run.out_dir={tmp_path}",
                                                           f"{key}={evil}")], trainer.__name__ + ".py")
    err = capsys.readouterr().err
    assert rc == 2 and "refusing to load" in err and "weights.pt" in err and "Traceback" not in err
    assert not marker.exists()


def test_save_atomic_fsyncs_file_and_folder(tmp_path, monkeypatch):
    from hyvideo.checkpoint.io import save_atomic

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.path.realpath(f"/proc/self/fd/{fd}")),
                                                 real_fsync(fd))[1])
    path = save_atomic({"w": torch.ones(2)}, tmp_path / "sub" / "w.pt")
    assert synced == [str(tmp_path / "sub" / "w.pt.tmp"), str(tmp_path / "sub")]
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(2))
    assert not (tmp_path / "sub" / "w.pt.tmp").exists()
