"""scripts/train_nano_i2v.py and scripts/eval_nano_i2v.py on tiny weights: the I2V fine-tune of a nano run, the tree
it writes (T2V and I2V side by side, text-only I2V text encoder), sample_video.py --i2v-mode on it, the eval's
report (finite figures; video-to-video at strength 1.0 equal to text-to-video from the same noise), resume, and
the exit status 2 cases. A nano-like run folder is assembled from the tiny tree and the tiny latent cache (the
real ``train_nano.py --quick`` takes minutes)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from tests.training.conftest import ROOT
from tests.training.conftest import run_tiny_dit as _run

CARD = {"vocabulary": ["a", "circle", "moves", "red", "left", "the", "to"],
        "trained": {"sizes": [[64, 64]], "frames": [1, 5]},
        "sampling": {"video_size": [64, 64], "video_length": 5, "infer_steps": 2, "flow_shift": 3.0, "cfg_scale": 1.0,
                     "negative_prompt": None, "text_len": 16, "fps": 24, "example": "a red circle moves to the left"}}


@pytest.fixture(scope="module")
def nano_run(tmp_path_factory, tiny_ckpts, latent_cache) -> Path:
    """What train_nano_i2v.py reads from a nano run: cache64_plain, latent_scale.json, the VAE export, dit4's export and
    the tree (tiny weights; the tiny tree plays the nano tree)."""
    run = tmp_path_factory.mktemp("nano_run")
    _run(run / "dit4", f"data.latent_cache={latent_cache}", "run.max_steps=1", "run.ckpt_every=0")
    shutil.copytree(latent_cache, run / "cache64_plain")
    (run / "latent_scale.json").write_text(json.dumps({"latent_scale": 1.0}))
    shutil.copytree(tiny_ckpts / "hunyuan-video-t2v-720p" / "vae", run / "vae" / "export" / "vae")
    shutil.copytree(tiny_ckpts, run / "tree")
    (run / "tree" / "nano.json").write_text(json.dumps(CARD))
    return run


@pytest.fixture(scope="module")
def i2v_run(tmp_path_factory, nano_run) -> Path:
    import train_nano_i2v

    cfg = json.loads((ROOT / "hyvideo/configs/dit_tiny.json").read_text())
    out = tmp_path_factory.mktemp("nano_i2v")
    (out.parent / "dit_tiny_i2v.json").write_text(json.dumps({**cfg, "i2v_condition_type": "token_replace"}))
    train_nano_i2v.main(["--nano-run", str(nano_run), "--out", str(out), "--quick", "--eval-seeds", "0",
                         "--set", f"model.dit_config={out.parent / 'dit_tiny_i2v.json'}", "--set", "data.num_frames=5",
                         "--set", "model.text_max_length=16"])
    return out


def test_tree_holds_t2v_and_token_replace_i2v_with_a_text_only_i2v_encoder(i2v_run, nano_run):
    from hyvideo.checkpoint.io import resolve_model_paths
    from hyvideo.checkpoint.loader import has_vision_tower

    tree = i2v_run / "tree"
    i2v, t2v = resolve_model_paths(tree, i2v=True), resolve_model_paths(tree)
    assert "hunyuan-video-i2v-720p" in str(i2v.dit) and i2v.dit.suffix == ".safetensors"
    assert json.loads((i2v.dit.parent / "config.json").read_text())["i2v_condition_type"] == "token_replace"
    assert i2v.text_encoder.name == "text_encoder_i2v" and not has_vision_tower(i2v.text_encoder)
    assert (t2v.dit.read_bytes() == (nano_run / "tree" / t2v.dit.relative_to(tree)).read_bytes())  # T2V kept
    card = json.loads((tree / "nano.json").read_text())
    assert card["i2v"]["condition_type"] == "token_replace" and card["sampling"]["i2v_resolution"] == "64p"
    progress = json.loads((i2v_run / "progress.json").read_text())
    assert all(progress[s]["done"] for s in ("i2v", "tree", "eval"))
    assert all(math.isfinite(progress["i2v"]["summary"][k]) for k in ("loss_first", "loss_last"))


def test_eval_report_is_finite_and_v2v_at_strength_1_equals_t2v(i2v_run):
    report = json.loads((i2v_run / "eval_i2v.json").read_text())
    s = report["summary"]
    assert s["clips"] == 2 and len(report["i2v_clips"]) == 2 and len(report["v2v_clips"]) == 2
    for key in ("first_frame_psnr", "vae_psnr", "vae_clip_psnr", "psnr_gap_max", "clip_gap_max", "vae_refs_gap_max",
                "colour_acc", "motion_acc", "v2v_colour_kept", "vae_colour_kept"):
        assert math.isfinite(s[key]), key
    assert 0 <= s["psnr_within_1db"] <= 2 and 0 <= s["clip_within_1db"] <= 2
    assert sum(int(v.split("/")[1]) for v in s["motion_by_type"].values()) == 2
    assert 0 <= s["colour_acc"] <= 100 and s["v2v_shift_px"] >= 0 or math.isnan(s["v2v_shift_px"])
    assert s["v2v_t2v_max_abs"] == 0.0  # strength 1 starts from the noise itself: bit-exact text-to-video
    assert "V2V strength 1.0 vs T2V" in report["table"] and "I2V first frame" in report["table"]


def test_rerun_resumes_every_stage(i2v_run, nano_run, capsys):
    import train_nano_i2v

    train_nano_i2v.main(["--nano-run", str(nano_run), "--out", str(i2v_run), "--quick"])
    out = capsys.readouterr().out
    assert all(f"{s:8s} done earlier" in out for s in ("i2v", "tree", "eval"))


def test_sample_video_i2v_mode_on_the_tree(i2v_run, tmp_path):
    import numpy as np
    from PIL import Image

    import sample_video
    from hyvideo.utils.video_io import read_video

    Image.fromarray(np.full((64, 64, 3), 40, np.uint8)).save(tmp_path / "frame.png")
    code = sample_video.main(["--model-base", str(i2v_run / "tree"), "--i2v-mode", "--i2v-image-path",
                              str(tmp_path / "frame.png"), "--prompt", "a red circle moves to the left",
                              "--precision", "fp32", "--vae-precision", "fp32", "--text-encoder-precision", "fp32",
                              "--save-path", str(tmp_path / "out")])
    assert code == 0
    video = read_video(next((tmp_path / "out").glob("*.mp4")))
    assert tuple(video.shape[1:3]) == (64, 64) and video.shape[0] == CARD["sampling"]["video_length"]


def test_bad_arguments_exit_2(i2v_run, nano_run, tmp_path, capsys):
    import eval_nano_i2v
    import train_nano_i2v

    partial = tmp_path / "partial"
    shutil.copytree(nano_run / "tree", partial / "tree")
    for argv, message in [
        (["--nano-run", str(partial), "--out", str(tmp_path / "o")], "lacks dit4/export/dit.pt (its 'dit4' stage"),
        (["--nano-run", str(nano_run), "--out", str(nano_run / "i2v")], "is inside --nano-run"),
    ]:
        with pytest.raises(SystemExit) as e:
            train_nano_i2v.parse_args(argv)
        assert e.value.code == 2 and message in capsys.readouterr().err
    for argv, message in [
        (["--model-base", str(nano_run / "tree")], "has no image-to-video DiT"),
        (["--model-base", str(i2v_run / "tree"), "--limit", "0"], "--limit must be >= 1"),
    ]:
        with pytest.raises(SystemExit) as e:
            eval_nano_i2v.parse_args(argv)
        assert e.value.code == 2 and message in capsys.readouterr().err
