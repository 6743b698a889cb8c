"""The training CLIs on bad input: exit status 2, one message naming the value, no traceback, before any model
is built (issue 15). Most cases call the CLI entry in-process (the same ``run_cli`` as ``python train_*.py``);
one runs ``python train_dit.py`` and one a 2-process torchrun, to show one message in all."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import train_dit
import train_vae
from hyvideo.data.manifest import write_manifest
from hyvideo.training.cli import run_cli
from tests.training.conftest import ROOT

TINY, TINY_VAE = str(ROOT / "configs/train/tiny.yaml"), str(ROOT / "configs/train/tiny_vae.yaml")


@pytest.fixture(autouse=True)
def _run_dir(tmp_path, monkeypatch):
    """Every case gets its own empty run.out_dir (a case that passes the checks must not train in the repo)."""
    monkeypatch.setenv("HYVIDEO_TEST_OUT", str(tmp_path / "run"))


def _cli(capsys, script, *sets, config=None):
    argv = ["--config", config or (TINY if script is train_dit else TINY_VAE)]
    if not any(s.startswith("run.out_dir=") for s in sets):
        sets = (f"run.out_dir={os.environ['HYVIDEO_TEST_OUT']}", *sets)
    argv += [a for s in sets for a in ("--set", s)]
    rc = run_cli(script.main, argv, script.__name__ + ".py")
    err = capsys.readouterr().err
    return rc, err


def _assert_usage_error(rc, err, *needles):
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, latent_cache):
    """A tiny DiT run of 2 steps (checkpoints at steps 1 and 2)."""
    out = tmp_path_factory.mktemp("runs") / "done"
    train_dit.main(["--config", TINY, "--set", f"data.latent_cache={latent_cache}", "--set", f"run.out_dir={out}",
                    "--set", "run.max_steps=2", "--set", "run.ckpt_every=1"])
    return out


@pytest.mark.parametrize("sets, needles", [
    (["data.manifest=/nonexistent/clips.jsonl"], ["data.manifest", "/nonexistent/clips.jsonl"]),
    (["optim.lr=-1e-4"], ["optim.lr", "-0.0001"]),
    (["run.max_steps=0"], ["run.max_steps must be > 0", "got 0"]),
    (["optim.learning_rate=3"], ["optim.learning_rate"]),
    (["data.num_frames=6"], ["data.num_frames", "6"]),
    (["data.resolutions=[300]"], ["'300'", "known tiers"]),
    (["parallel.sp_degree=2"], ["sp_degree=2", "world size 1"]),
    (["run.init_from=/nonexistent/dit.pt"], ["run.init_from", "/nonexistent/dit.pt"]),
    (["model.dit_config=/nonexistent/dit.json"], ["model.dit_config", "/nonexistent/dit.json"]),
    (["model.text_encoder=/nonexistent/ckpts"], ["model.text_encoder", "/nonexistent/ckpts"]),
    (["data.latent_cache=/nonexistent/cache"], ["data.latent_cache", "/nonexistent/cache"]),
    (["flow.text_dropout=1.5"], ["flow.text_dropout", "1.5"]),
])
def test_dit_bad_values(capsys, manifest, sets, needles):
    rc, err = _cli(capsys, train_dit, f"data.manifest={manifest}", *sets)
    _assert_usage_error(rc, err, *needles)


def test_bad_manifest_lines_name_the_line(capsys, tmp_path, manifest):
    good = manifest.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good[0] + "\n\n" + '{"path": "a.mp4", "caption": "unterminated}\n')
    _assert_usage_error(*_cli(capsys, train_dit, f"data.manifest={bad}"), f"{bad}:3", "invalid JSON")
    nopath = write_manifest([{"caption": "no path"}], tmp_path / "nopath.jsonl")
    _assert_usage_error(*_cli(capsys, train_dit, f"data.manifest={nopath}"), "nopath.jsonl:1", "without 'path'")
    frames = write_manifest([{"path": "a.mp4", "end_frame": "ten"}], tmp_path / "frames.jsonl")
    _assert_usage_error(*_cli(capsys, train_dit, f"data.manifest={frames}"), "frames.jsonl:1", "'end_frame'", "'ten'")


def test_clips_too_short_say_so(capsys, manifest):
    """Was: "no bucket has a full global batch" (the videos were dropped, the images could not fill a batch)."""
    rc, err = _cli(capsys, train_dit, f"data.manifest={manifest}", "data.num_frames=101")
    _assert_usage_error(rc, err, "data.num_frames=101", "at least 12.50 s", "shorter")


def test_no_full_batch_is_a_usage_error(capsys, manifest):
    rc, err = _cli(capsys, train_dit, f"data.manifest={manifest}", "data.image_batch_size=64",
                   "data.video_batch_size=64")
    _assert_usage_error(rc, err, "no bucket has a full global batch", "image_batch_size")


def test_config_file_errors(capsys, tmp_path, manifest):
    _assert_usage_error(*_cli(capsys, train_dit, config=str(tmp_path / "missing.yaml")), "missing.yaml", "not found")
    broken = tmp_path / "broken.yaml"
    broken.write_text("run:\n  max_steps: [1\n")
    _assert_usage_error(*_cli(capsys, train_dit, config=str(broken)), "broken.yaml", "not valid YAML")


def test_finished_run_is_not_silently_reexported(capsys, finished_run, latent_cache):
    rc, err = _cli(capsys, train_dit, f"data.latent_cache={latent_cache}", f"run.out_dir={finished_run}",
                   "run.max_steps=2")
    _assert_usage_error(rc, err, "run.max_steps=2", "(2, ", "finished", "run.resume=never")


def test_resume_with_another_model_size_is_refused(capsys, tmp_path, finished_run, latent_cache):
    import json

    cfg = json.loads((ROOT / "hyvideo/configs/dit_tiny.json").read_text())
    cfg["hidden_size"], cfg["heads_num"] = 64, 4
    bigger = tmp_path / "dit_bigger.json"
    bigger.write_text(json.dumps(cfg))
    rc, err = _cli(capsys, train_dit, f"data.latent_cache={latent_cache}", f"run.out_dir={finished_run}",
                   "run.max_steps=5", f"model.dit_config={bigger}")
    _assert_usage_error(rc, err, "another model configuration", "hidden_size: 32 -> 64", "new run.out_dir")
    assert err.count("\n") <= 2  # not a wall of size mismatches


@pytest.mark.parametrize("sets, needles", [
    (["data.manifest=/nonexistent/clips.jsonl"], ["data.manifest", "/nonexistent/clips.jsonl"]),
    (["optim.lr=-1"], ["optim.lr", "-1"]),
    (["loss.kl_weight=-1e-6"], ["loss.kl_weight"]),
    (["loss.mse_weight=nan"], ["loss.mse_weight"]),
    (["curriculum=[{start_step: 0, resolutions: [32], num_frames: 5, video_batch_size: -1}]"],
     ["video_batch_size", "-1"]),
    (["curriculum=[{start_step: 0, resolutions: [32], num_frames: 6}]"], ["curriculum[0].num_frames", "6"]),
    (["model.init_weights=/nonexistent/vae.pt"], ["model.init_weights", "/nonexistent/vae.pt"]),
    (["loss.lpips_vgg=/nonexistent/vgg16.pth"], ["loss.lpips_vgg"]),
    (["parallel.sp_degree=2"], ["sp_degree applies to the DiT only"]),
])
def test_vae_bad_values(capsys, manifest, sets, needles):
    rc, err = _cli(capsys, train_vae, f"data.manifest={manifest}", *sets)
    _assert_usage_error(rc, err, *needles)


def test_vae_clips_too_short(capsys, manifest):
    rc, err = _cli(capsys, train_vae, f"data.manifest={manifest}", "run.max_steps=1",
                   "curriculum=[{start_step: 0, resolutions: [32], num_frames: 101}]", "data.fps=8")
    _assert_usage_error(rc, err, "curriculum[0].num_frames=101", "shorter")


def _env():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HYVIDEO_NATIVE": "0"}
    env.pop("RANK", None)
    return env


def test_the_script_itself_exits_2_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "train_dit.py"), "--config", TINY, "--set",
                           f"data.manifest={tmp_path / 'missing.jsonl'}", "--set", f"run.out_dir={tmp_path}"],
                          cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=120)
    _assert_usage_error(proc.returncode, proc.stderr, "data.manifest", "missing.jsonl")


@pytest.mark.dist
def test_two_ranks_print_one_message(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "train_vae.py"), "--config", TINY_VAE, "--set", f"data.manifest={tmp_path / 'missing.jsonl'}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    ours = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "train_vae.py: error:" in ln]
    assert len(ours) == 1 and "missing.jsonl" in ours[0], proc.stderr[-2000:]
    assert "exitcode  : 2" in proc.stderr
    assert str(ROOT / "train_vae.py") + '", line' not in proc.stderr  # torchrun's own summary only
