"""Image-to-video and video-to-video pipeline: frames vs diffusers' I2V pipeline, first frame, SDEdit strength."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hyvideo.checkpoint.loader import load_pipeline
from hyvideo.pipeline import latent_shape, seeded_noise

PROMPT = "A cat walks on the grass, realistic style."
H, W, T = 64, 48, 9  # non-square
FP32 = dict(dit_dtype=torch.float32, vae_dtype=torch.float32, text_dtype=torch.float32, log=lambda *a: None)


def _image(h=H, w=W, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((h, w, 3)) * 255).astype("uint8"))


@pytest.mark.parametrize("condition_type", ["token_replace", "latent_concat"])
def test_two_step_frames_match_diffusers_i2v_pipeline(tiny_i2v_tree, condition_type):
    from diffusers import HunyuanVideoImageToVideoPipeline

    ours = load_pipeline(tiny_i2v_tree(condition_type), i2v=True, **FP32)
    theirs = HunyuanVideoImageToVideoPipeline.from_pretrained(tiny_i2v_tree(condition_type, "diffusers"),
                                                              dtype=torch.float32)
    theirs.set_progress_bar_config(disable=True)
    enc, image = ours.text_encoder, _image()
    template = {"template": enc.template, "crop_start": enc.crop_start, "image_emb_start": enc.image_emb_start,
                "image_emb_end": enc.image_emb_start + enc.image_emb_len, "image_emb_len": enc.image_emb_len}
    noise = seeded_noise([3], latent_shape(1, H, W, T))
    ref = theirs(image=image, prompt=PROMPT, height=H, width=W, num_frames=T, num_inference_steps=2,
                 guidance_scale=6.0, latents=noise.clone(), output_type="pt", prompt_template=template).frames
    got = ours([PROMPT], height=H, width=W, video_length=T, seeds=[3], latents=noise.clone(), infer_steps=2,
               flow_shift=7.0, embedded_guidance_scale=6.0, vae_tiling=False, progress=False, image=image,
               i2v_stability=True)  # diffusers always starts from the stability mix
    frames = T - 4 if condition_type == "latent_concat" else T  # the released latent-concat decode drops 4
    assert got.shape == ref.permute(0, 2, 1, 3, 4).shape == (1, 3, frames, H, W)
    err = (got - ref.permute(0, 2, 1, 3, 4)).abs().max().item()
    print(f"{condition_type}: I2V pipeline max abs frame error vs diffusers {err:.2e}")
    assert err <= 1e-3
    assert got.std() > 1e-3


def test_token_replace_final_first_latent_frame_is_the_image_latent(tiny_i2v_tree):
    from hyvideo.data.i2v_buckets import image_to_tensor

    pipe = load_pipeline(tiny_i2v_tree("token_replace"), i2v=True, **FP32)
    image = _image(seed=1)
    out = pipe([PROMPT, PROMPT], height=H, width=W, video_length=T, seeds=[1, 2], infer_steps=3, progress=False,
               vae_tiling=False, image=image, output_type="latent", cfg_scale=2.0)  # CFG: black-image branch too
    with torch.no_grad():  # the pipeline encodes both copies in one batch: equal up to kernel summation order
        ref = pipe.encode_latents(image_to_tensor(image)[None, :, None].expand(2, -1, -1, -1, -1), vae_tiling=False)
    assert torch.equal(out[:, :, :1], ref)
    assert not torch.equal(out[0, :, 1:], out[1, :, 1:])  # the seeds still differ after frame 0


def test_video_to_video_strength_one_is_text_to_video_and_first_frame_pins(tiny_ckpts):
    pipe = load_pipeline(tiny_ckpts, **FP32)
    noise = seeded_noise([5], latent_shape(1, H, W, T))
    clip = torch.rand(1, 3, T, H, W) * 2 - 1
    kw = dict(height=H, width=W, video_length=T, seeds=[5], infer_steps=4, progress=False, vae_tiling=False,
              output_type="latent")
    t2v = pipe([PROMPT], latents=noise.clone(), **kw)
    v2v = pipe([PROMPT], latents=noise.clone(), video=clip, strength=1.0, **kw)
    assert torch.equal(v2v, t2v)
    # decoded frames too, for a batch of clips read as [B, T, H, W, 3] (the encoder then returns channels-last
    # latents, on which the decoder's convolutions round differently unless the start latent is made contiguous)
    frames = {**kw, "output_type": "video", "seeds": [5, 6]}
    clips = (torch.rand(2, T, H, W, 3) * 2 - 1).permute(0, 4, 1, 2, 3)
    assert torch.equal(pipe([PROMPT] * 2, video=clips, strength=1.0, **frames), pipe([PROMPT] * 2, **frames))
    with torch.no_grad():
        z0 = pipe.encode_latents(clip, vae_tiling=False)
    low = pipe([PROMPT], latents=noise.clone(), video=clip, strength=0.5, **kw)
    assert (low - z0).abs().mean() < (t2v - z0).abs().mean()  # strength 0.5 stays closer to the input
    pinned = pipe([PROMPT], latents=noise.clone(), video=clip, strength=1.0, fix_first_frame=True, **kw)
    torch.testing.assert_close(pinned[:, :, :1], z0[:, :, :1], rtol=0, atol=1e-5)
    assert (pinned[:, :, 1:] - t2v[:, :, 1:]).abs().max() > 0  # the other frames follow the pinned one


def test_mode_errors_name_the_condition_type(tiny_ckpts, tiny_i2v_tree):
    kw = dict(height=H, width=W, video_length=T, seeds=[0], infer_steps=1, progress=False)
    t2v = load_pipeline(tiny_ckpts, **FP32)
    with pytest.raises(ValueError, match=r"text-to-video model \(i2v_condition_type None\)"):
        t2v([PROMPT], image=_image(), **kw)
    i2v = load_pipeline(tiny_i2v_tree("token_replace"), i2v=True, **FP32)
    with pytest.raises(ValueError, match="image-to-video model \\(i2v_condition_type 'token_replace'\\)"):
        i2v([PROMPT], **kw)
    with pytest.raises(ValueError, match=r"--strength must be in \(0, 1\]"):
        t2v([PROMPT], video=torch.zeros(1, 3, T, H, W), strength=1.5, **kw)
    with pytest.raises(ValueError, match="encodes to latents"):
        t2v([PROMPT], video=torch.zeros(1, 3, T - 4, H, W), strength=0.5, **kw)
