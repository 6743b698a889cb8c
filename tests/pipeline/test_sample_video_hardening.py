"""sample_video.py refuses bad requests before loading, never loses a finished video, never writes garbage."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

PROMPT = "A cat walks on the grass, realistic style."
BASE = ["--prompt", PROMPT, "--video-size", "64", "64", "--video-length", "9", "--infer-steps", "1", "--seed", "1",
        "--device", "cpu"]


def _main(argv, capsys):
    import sample_video

    code = sample_video.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("change, message", [
    (["--embedded-cfg-scale", "nan"], "embedded guidance scale must be a finite number, got nan"),
    (["--cfg-scale", "nan"], "cfg scale must be a finite number, got nan"),
    (["--cfg-scale", "inf"], "cfg scale must be a finite number, got inf"),
    (["--flow-shift", "0"], "flow shift must be a finite number > 0, got 0.0"),
    (["--flow-shift", "-2"], "flow shift must be a finite number > 0"),
    (["--seed", str(2**64)], "is outside 0.."),
    (["--seed", "-1"], "is outside 0.."),
    (["--fps", "0"], "--fps must be >= 1, got 0"),
    (["--cache-threshold", "nan"], "--cache-threshold must be >= 0"),
    (["--use-cpu-offload", "--model-cpu-offload"], "choose one offload flag"),
])
def test_bad_values_exit_2_before_loading(change, message, tiny_ckpts, tmp_path, capsys):
    code, out, err = _main([*BASE, *change, "--model-base", str(tiny_ckpts), "--save-path", str(tmp_path)], capsys)
    assert code == 2 and message in err, err
    assert "loading" not in out and "Traceback" not in err


def test_unusable_save_path_exits_2_before_loading(tiny_ckpts, tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    code, out, err = _main([*BASE, "--model-base", str(tiny_ckpts), "--save-path", str(a_file)], capsys)
    assert code == 2 and "is a file, not a folder" in err and "loading" not in out
    if os.geteuid() != 0:  # root writes anywhere; the read-only case needs a normal user
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
        code, out, err = _main([*BASE, "--model-base", str(tiny_ckpts), "--save-path", str(ro / "sub")], capsys)
        assert code == 2 and "not writable" in err


def test_huge_request_is_refused_with_the_figure_and_the_flags(tiny_ckpts, tmp_path, capsys):
    code, out, err = _main([*BASE, "--video-size", "100000", "100000", "--model-base", str(tiny_ckpts),
                            "--save-path", str(tmp_path), "--no-vae-tiling"], capsys)
    assert code == 2 and "GiB" in err and "free" in err and "--vae-tiling" in err, err
    assert "loading" not in out


def test_long_cjk_prompt_saves_with_a_bounded_unique_name(tiny_ckpts, tmp_path, capsys):
    prompt = "一只猫在草地上慢慢地走着，阳光明媚，" * 6  # ~108 CJK characters: > 255 bytes in UTF-8
    argv = [*BASE, "--prompt", prompt, "--model-base", str(tiny_ckpts), "--save-path", str(tmp_path)]
    for _ in range(2):  # the same prompt and seed twice: two files, not an overwrite
        code, out, err = _main(argv, capsys)
        assert code == 0, err
    mp4s = sorted(tmp_path.glob("*.mp4"))
    assert len(mp4s) == 2 and all(len(p.name.encode()) <= 255 for p in mp4s)
    assert all(p.with_suffix(".json").is_file() for p in mp4s)


def test_nan_weights_are_reported_at_load(tiny_ckpts, tmp_path, capsys):
    src = tiny_ckpts / "hunyuan-video-t2v-720p" / "transformers"
    sd = torch.load(src / "mp_rank_00_model_states.pt", weights_only=True)["module"]
    sd["final_layer.linear.weight"][0, 0] = float("nan")
    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save({"module": sd}, bad / "mp_rank_00_model_states.pt")
    (bad / "config.json").write_text((src / "config.json").read_text())
    code, out, err = _main([*BASE, "--model-base", str(tiny_ckpts), "--dit-weight",
                            str(bad / "mp_rank_00_model_states.pt"), "--save-path", str(tmp_path / "o")], capsys)
    assert code == 2 and "non-finite (NaN/Inf)" in err and "final_layer.linear.weight" in err


def test_a_pickle_payload_in_a_weight_file_does_not_run(tiny_ckpts, tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save({"module": {"x": Payload()}}, bad / "mp_rank_00_model_states.pt")
    src = tiny_ckpts / "hunyuan-video-t2v-720p" / "transformers"
    (bad / "config.json").write_text((src / "config.json").read_text())
    code, out, err = _main([*BASE, "--model-base", str(tiny_ckpts), "--dit-weight",
                            str(bad / "mp_rank_00_model_states.pt"), "--save-path", str(tmp_path / "o")], capsys)
    assert code == 2 and "refused to unpickle" in err
    assert not marker.exists()


def test_failed_save_keeps_the_finished_video(tiny_ckpts, tmp_path, capsys, monkeypatch):
    import hyvideo.utils.video_io as vio

    real = vio.save_video
    calls = []

    def flaky(video, path, fps=24):
        calls.append(path)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real(video, path, fps)

    monkeypatch.setattr(vio, "save_video", flaky)
    code, out, err = _main([*BASE, "--model-base", str(tiny_ckpts), "--save-path", str(tmp_path)], capsys)
    assert code == 1 and "No space left on device" in err
    rescued = Path(err.split("the finished video was saved to ")[1].strip())
    assert rescued.is_file() and rescued.suffix == ".mp4" and rescued.stat().st_size > 0


def test_nan_latents_stop_with_the_step_named(tiny_ckpts):
    from hyvideo.checkpoint.loader import load_pipeline
    from hyvideo.diffusion.sampler import NonFiniteError

    pipe = load_pipeline(tiny_ckpts, dit_dtype=torch.float32, vae_dtype=torch.float32, text_dtype=torch.float32,
                         log=lambda *_: None)
    with torch.no_grad():
        pipe.dit.final_layer.linear.bias.fill_(float("inf"))
    with pytest.raises(NonFiniteError, match="step 1 of 2"):
        pipe([PROMPT], height=32, width=32, video_length=5, seeds=[0], infer_steps=2, progress=False)
