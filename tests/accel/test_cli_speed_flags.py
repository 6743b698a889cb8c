"""sample_video.py speed/memory flags: FP8 + CPU offload + step cache run end to end; a bad Ulysses
degree exits 2 with the allowed values."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import sample_video  # noqa: E402

PROMPT = "A cat walks on the grass, realistic style."
BASE = ["--prompt", PROMPT, "--video-size", "64", "64", "--video-length", "9", "--device", "cpu"]


def test_fp8_offload_and_cache_flags_write_a_video(tiny_ckpts, tmp_path, capsys):
    out = tmp_path / "results"
    rc = sample_video.main(["--model-base", str(tiny_ckpts), *BASE, "--infer-steps", "2", "--seed", "3",
                            "--use-fp8", "--use-cpu-offload", "--cache-threshold", "10", "--precision", "bf16",
                            "--save-path", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert len(list(out.glob("*.mp4"))) == 1
    # threshold 10 skips every step after the first
    assert "step cache (threshold 10.0): 1 of 2 DiT evaluations computed" in capsys.readouterr().out


def test_invalid_ulysses_degree_exits_2_with_message(tiny_ckpts, tmp_path, capsys, monkeypatch):
    for key, value in dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                           MASTER_PORT="29555").items():
        monkeypatch.setenv(key, value)  # a 1-process "torchrun" env, restored after the test
    rc = sample_video.main(["--model-base", str(tiny_ckpts), *BASE, "--ulysses-degree", "3",
                            "--save-path", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "must divide the number of attention heads 2" in err and "allowed degrees: [1, 2]" in err
    rc = sample_video.main(["--model-base", str(tiny_ckpts), *BASE, "--ulysses-degree", "2",
                            "--save-path", str(tmp_path)])  # valid degree, but no torchrun: world size 1
    assert rc == 2
    assert "not divisible by the sequence-parallel degree 2" in capsys.readouterr().err


def test_attn_backend_choices_are_the_attention_backends():
    import hyvideo.accel.cpu.attention  # noqa: F401 - registers "gemm"
    from hyvideo.ops.attention import backends

    action = next(a for a in sample_video.build_parser()._actions if a.dest == "attn_backend")
    assert sorted(action.choices) == sorted(backends())
