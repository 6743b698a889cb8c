"""hyvideo.nano and sample_video.py's nano default: model base choice, card defaults, vocabulary and size warnings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hyvideo import nano

CARD = {"vocabulary": ["a", "circle", "moves", "red", "right", "the", "to"],
        "trained": {"sizes": [[64, 64]], "frames": [1, 9]},
        "sampling": {"video_size": [64, 64], "video_length": 9, "infer_steps": 2, "flow_shift": 2.0, "cfg_scale": 1.0,
                     "negative_prompt": None, "text_len": 16, "fps": 24, "example": "a red circle moves to the right"}}


def test_default_model_base_prefers_ckpts(tmp_path):
    assert nano.default_model_base(tmp_path) == (nano.NANO_TREE, True)
    (tmp_path / "ckpts").mkdir()
    assert nano.default_model_base(tmp_path) == (tmp_path / "ckpts", False)


def test_card_defaults_fill_only_flags_not_given():
    import sample_video

    argv = ["--prompt", "x", "--infer-steps", "5"]
    args = sample_video.build_parser().parse_args(argv)
    changed = nano.apply_card_defaults(args, CARD, sample_video.given_flags(argv))
    assert args.infer_steps == 5 and args.video_size == [64, 64] and args.video_length == 9
    assert args.flow_shift == 2.0 and args.text_len == 16 and args.neg_prompt is None
    assert "infer_steps=2" not in changed and "video_length=9" in changed


def test_warnings_name_unknown_words_and_untrained_sizes():
    msg = nano.prompt_warning("An astronaut rides a red horse", CARD)
    assert "'an', 'astronaut', 'rides', 'horse'" in msg and "a circle moves red right the to" in msg
    assert nano.prompt_warning("A red circle moves to the right.", CARD) is None
    assert nano.size_warning(64, 64, 9, CARD) is None
    msg = nano.size_warning(128, 64, 33, CARD)
    assert "size 128x64" in msg and "length 33 frames" in msg and "--video-size 64 64 --video-length 9" in msg


def test_bad_card_is_an_error(tmp_path):
    assert nano.read_card(tmp_path) is None
    (tmp_path / "nano.json").write_text(json.dumps({"vocabulary": []}))
    with pytest.raises(ValueError, match="not a nano model card"):
        nano.read_card(tmp_path)


@pytest.fixture()
def nano_like_tree(tiny_ckpts, tmp_path):
    """The tiny random tree with a nano model card (the mechanism, not the trained model)."""
    tree = tmp_path / "tree"
    shutil.copytree(tiny_ckpts, tree)
    (tree / "nano.json").write_text(json.dumps(CARD))
    return tree


def test_sample_video_applies_the_card_and_warns(nano_like_tree, tmp_path, capsys):
    import sample_video

    out = tmp_path / "results"
    code = sample_video.main(["--model-base", str(nano_like_tree), "--prompt", "an astronaut rides a horse",
                              "--video-size", "32", "32", "--seed", "1", "--save-path", str(out)])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    assert "nano model card defaults:" in cap.out and "infer_steps=2" in cap.out and "video_size" not in cap.out
    assert cap.err.count("warning:") == 2
    assert "'astronaut', 'rides', 'horse'" in cap.err and "size 32x32 (trained: 64x64)" in cap.err
    sidecar = json.loads(next(out.glob("*.json")).read_text())
    assert sidecar["frames"] == 9 and sidecar["args"]["infer_steps"] == 2 and sidecar["args"]["text_len"] == 16


def test_sample_video_without_model_base_uses_ckpts_or_the_nano_tree(nano_like_tree, tmp_path, monkeypatch, capsys):
    import sample_video

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(nano, "NANO_TREE", Path(nano_like_tree))
    code = sample_video.main(["--prompt", "a red circle moves to the right", "--seed", "1",
                              "--save-path", str(tmp_path / "r")])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    assert cap.out.count("no ./ckpts folder: using the hyvideo-nano model") == 1 and "warning" not in cap.err
    (tmp_path / "ckpts").mkdir()  # an empty ./ckpts wins (and fails with a message naming it)
    code = sample_video.main(["--prompt", "a red circle", "--video-size", "64", "--video-length", "9"])
    assert code == 2 and "ckpts" in capsys.readouterr().err


def test_front_ends_without_ckpts_or_nano_tree_exit_2_before_loading(tmp_path, monkeypatch, capsys):
    import gradio_server
    import sample_video

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(nano, "NANO_TREE", tmp_path / "not_shipped")
    assert sample_video.main(["--prompt", "a red circle moves to the right", "--save-path", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "no ./ckpts folder and no hyvideo-nano tree" in err and "train_nano.py" in err
    assert gradio_server.main(["--save-path", str(tmp_path / "g")]) == 2
    assert "no hyvideo-nano tree" in capsys.readouterr().err


@pytest.mark.slow
def test_train_nano_quick_killed_mid_stage_resumes_and_finishes(tmp_path):
    """Opt-in (~2 min on 2 cores): ``train_nano.py --quick`` killed (SIGKILL) inside a trainer stage, then rerun."""
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, str(root / "scripts" / "train_nano.py"), "--out", str(tmp_path / "run"), "--quick"]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    progress = tmp_path / "run" / "progress.json"
    deadline = time.time() + 300
    while time.time() < deadline:  # wait until the VAE stage is done, i.e. the DiT stages are running
        if progress.is_file() and json.loads(progress.read_text()).get("vae", {}).get("done"):
            break
        time.sleep(1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = json.loads(progress.read_text())
    assert before["vae"]["done"] and not before.get("eval", {}).get("done")
    out = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "vae      done earlier" in out.stdout
    after = json.loads(progress.read_text())
    assert all(after[s]["done"] for s in ("vae", "dit1", "dit2", "dit3", "dit4", "tree", "eval"))
    plain = [json.loads(x) for x in (tmp_path / "run" / "cache64_plain" / "index.jsonl").read_text().splitlines()]
    assert plain and all(" and " not in x["caption"] and "camera" not in x["caption"] for x in plain)
    assert (tmp_path / "run" / "tree" / "README.md").is_file()


@pytest.mark.parametrize("text_conditioning", ["llm+clip", "clip"])
def test_eval_nano_runs_on_a_tree_with_either_text_conditioning(nano_like_tree, tmp_path, text_conditioning):
    """``eval_nano.py --text-conditioning clip`` feeds the DiT CLIP's token states (a CLIP-only ablation DiT)."""
    from tests.conftest import load_script

    from hyvideo.data.synthetic import evaluation as ev
    from hyvideo.text.encoders import CLIPTokenEncoder

    pipe = ev.load_eval_pipeline(nano_like_tree, text_len=16, text_conditioning=text_conditioning)
    assert isinstance(pipe.text_encoder, CLIPTokenEncoder) == (text_conditioning == "clip")
    report = load_script("eval_nano").main(["--model-base", str(nano_like_tree), "--limit", "1", "--seeds", "0",
                                            "--steps", "1", "--text-conditioning", text_conditioning,
                                            "--out", str(tmp_path / "eval.json")])
    assert report["text_conditioning"] == text_conditioning and report["num_clips"] == 1
    assert all(np.isfinite(report["model"][k]) for k in ("colour_acc", "smoothness", "fd"))
    assert np.isfinite(report["vae_round_trip"]["fd"]) and "rendered -> VAE round trip" in report["table"]
    assert sum(n for _, n in report["model"]["by_word"]["shape_by_motion"].values()) == 1
    with pytest.raises(ValueError, match="text_conditioning must be one of .*got 't5'"):
        ev.load_eval_pipeline(nano_like_tree, text_conditioning="t5")


def test_eval_nano_size_option(nano_like_tree, tmp_path, capsys):
    """``--size`` overrides the card's frame side (here on a seen triple, ``--triples training``); a side that is
    not a multiple of 16 px exits 2 and names it."""
    from tests.conftest import load_script

    script = load_script("eval_nano")
    report = script.main(["--model-base", str(nano_like_tree), "--limit", "1", "--seeds", "0", "--steps", "1",
                          "--size", "32", "--triples", "training", "--out", str(tmp_path / "eval.json")])
    assert report["settings"]["height"] == report["settings"]["width"] == 32
    assert report["triples"] == "training" and report["model"]["clips"][0]["truth"] == ["red", "circle", "right"]
    with pytest.raises(SystemExit) as exit_info:
        script.parse_args(["--model-base", str(nano_like_tree), "--size", "100"])
    assert exit_info.value.code == 2 and "--size must be a positive multiple of 16 pixels, got 100" in capsys.readouterr().err
