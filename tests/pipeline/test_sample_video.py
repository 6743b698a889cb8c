"""sample_video.py end to end on the tiny checkpoints, and its errors for bad input (exit 2 + message)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch


ROOT = Path(__file__).resolve().parents[2]
PROMPT = "A cat walks on the grass, realistic style."


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "sample_video.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_readme_command_writes_playable_mp4_and_sidecar(tiny_ckpts, tmp_path):
    import imageio.v3 as iio

    out = tmp_path / "results"
    r = _run_cli("--model-base", str(tiny_ckpts), "--prompt", PROMPT, "--video-size", "64", "64",
                 "--video-length", "9", "--infer-steps", "4", "--seed", "7", "--save-path", str(out))
    assert r.returncode == 0, r.stderr
    (mp4,) = out.glob("*.mp4")
    assert "seed7" in mp4.name and str(mp4) in r.stdout
    frames = iio.imread(mp4, plugin="pyav")
    assert frames.shape == (9, 64, 64, 3) and frames.dtype == np.uint8
    assert frames.std() > 0  # not a blank video
    sidecar = json.loads(mp4.with_suffix(".json").read_text())
    assert sidecar["seed"] == 7 and sidecar["frames"] == 9 and sidecar["fps"] == 24
    assert sidecar["args"]["prompt"] == PROMPT and sidecar["args"]["infer_steps"] == 4
    assert sidecar["args"]["video_size"] == [64, 64] and sidecar["args"]["flow_shift"] == 7.0


def _main(argv, capsys):
    import sample_video

    code = sample_video.main(argv)
    return code, capsys.readouterr().err


BASE = ["--prompt", PROMPT, "--video-size", "64", "64", "--video-length", "9", "--infer-steps", "1"]


@pytest.mark.parametrize("change, message", [
    (["--video-length", "10"], "video length 10 is not 4n+1"),
    (["--video-size", "64", "72"], "must be positive multiples of 16"),
    (["--prompt", "  "], "the prompt is empty"),
    (["--precision", "fp8"], "unknown --precision 'fp8'"),
])
def test_bad_arguments_exit_2_before_loading(change, message, capsys, tmp_path):
    # --model-base points at nothing: the argument check must fail first, with its own message.
    code, err = _main([*BASE, *change, "--model-base", str(tmp_path / "absent")], capsys)
    assert code == 2 and message in err


def test_missing_weight_file_names_the_path(tiny_ckpts, capsys, tmp_path):
    missing = tmp_path / "nope" / "mp_rank_00_model_states.pt"
    code, err = _main([*BASE, "--model-base", str(tiny_ckpts), "--dit-weight", str(missing)], capsys)
    assert code == 2 and str(missing) in err
    code, err = _main([*BASE, "--model-base", str(tmp_path / "absent")], capsys)
    assert code == 2 and str(tmp_path / "absent") in err


def test_mismatched_weights_list_missing_and_unexpected_keys(tiny_ckpts, capsys, tmp_path):
    src = tiny_ckpts / "hunyuan-video-t2v-720p" / "transformers"
    sd = torch.load(src / "mp_rank_00_model_states.pt", weights_only=True)["module"]
    sd.pop("final_layer.linear.weight")
    sd["extra_block.weight"] = torch.zeros(1)
    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save({"module": sd}, bad / "mp_rank_00_model_states.pt")
    (bad / "config.json").write_text((src / "config.json").read_text())
    code, err = _main([*BASE, "--model-base", str(tiny_ckpts), "--dit-weight", str(bad / "mp_rank_00_model_states.pt")],
                      capsys)
    assert code == 2
    assert str(bad / "mp_rank_00_model_states.pt") in err
    assert "final_layer.linear.weight" in err and "extra_block.weight" in err


def test_help_lists_the_released_flags(capsys):
    import sample_video

    with pytest.raises(SystemExit) as exit_info:
        sample_video.main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    for flag in ("--model-base", "--dit-weight", "--video-size", "--video-length", "--infer-steps", "--neg-prompt",
                 "--flow-shift", "--embedded-cfg-scale", "--cfg-scale", "--vae-tiling", "--use-cpu-offload",
                 "--batch-size", "--num-videos", "--save-path", "--ulysses-degree"):
        assert flag in out
