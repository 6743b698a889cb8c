"""VAE loading for evaluation (official layout, diffusers HunyuanVideo and image AutoencoderKL folders), tiling, and
the reconstruction path."""

from __future__ import annotations

import json

import pytest
import torch

from hyvideo.eval.frame_metrics import frame_metrics
from hyvideo.eval.vae_recon import load_eval_vae, reconstruct_frames
from tests.eval.conftest import moving_square


def test_official_and_diffusers_folder_into_ours_are_identical(tiny_ckpts, tiny_ckpts_diffusers):
    official = load_eval_vae(tiny_ckpts)
    converted = load_eval_vae(tiny_ckpts_diffusers, impl="ours")
    native = load_eval_vae(tiny_ckpts_diffusers)
    assert (official.impl, converted.impl, native.impl) == ("ours", "ours", "diffusers")
    assert (official.spatial, official.temporal, native.spatial, native.temporal) == (8, 4, 8, 4)
    frames = moving_square(num_frames=5, size=32, side=8, step=2)
    a, b, c = (reconstruct_frames(v, frames) for v in (official, converted, native))
    assert a.shape == frames.shape and a.dtype == torch.uint8
    assert torch.equal(a, b)
    assert (a.int() - c.int()).abs().max() <= 1  # two implementations: 8-bit rounding flips at most
    metrics = frame_metrics(frames, a, metrics=("psnr", "ssim"))
    assert metrics["psnr"].shape == (5,) and (metrics["psnr"] > 0).all()


def test_a_batch_of_clips_reconstructs_as_each_clip_alone(tiny_ckpts):
    vae = load_eval_vae(tiny_ckpts)
    clips = torch.stack([moving_square(num_frames=5, size=32, side=8, step=s) for s in (1, 3)])  # [2, T, H, W, 3]
    batch = reconstruct_frames(vae, clips)
    assert batch.shape == clips.shape and batch.dtype == torch.uint8
    for clip, out in zip(clips, batch):
        assert (reconstruct_frames(vae, clip).int() - out.int()).abs().max() <= 1  # batched GEMMs: rounding flips


def test_tiled_reconstruction(tiny_ckpts):
    vae = load_eval_vae(tiny_ckpts, tiled=True)
    vae.module.tile_sample_min_size, vae.module.tile_sample_min_tsize = 32, 16  # small tiles: both tilings run
    calls = []
    encode_tile = vae.module._encode_tile
    vae.module._encode_tile = lambda x: calls.append(tuple(x.shape)) or encode_tile(x)
    frames = moving_square(num_frames=17, size=48, side=12, step=2)
    out = reconstruct_frames(vae, frames)
    assert out.shape == frames.shape and len(calls) > 4
    assert max(c[-1] for c in calls) <= 32 and max(c[2] for c in calls) <= 17


def test_image_autoencoderkl_folder(tmp_path):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, latent_channels=4,
                  norm_num_groups=4).save_pretrained(tmp_path / "vae")
    vae = load_eval_vae(tmp_path)  # finds vae/ under a pipeline-style root
    assert vae.image_vae and vae.spatial == 2 and vae.class_name == "AutoencoderKL"
    vae.check_frames(6)  # any frame count: frames are encoded one by one
    frames = moving_square(num_frames=3, size=32, side=8, step=2)
    assert reconstruct_frames(vae, frames).shape == frames.shape


def test_errors(tiny_ckpts, tmp_path):
    vae = load_eval_vae(tiny_ckpts)
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        vae.check_frames(8)
    with pytest.raises(FileNotFoundError, match="pytorch_model.pt"):
        load_eval_vae(tmp_path)
    with pytest.raises(ValueError, match="official layout"):
        load_eval_vae(tiny_ckpts, impl="diffusers")
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(ValueError, match="not a diffusers AutoencoderKL"):
        load_eval_vae(tmp_path)
