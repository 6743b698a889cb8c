"""Our pipeline vs diffusers' ``HunyuanVideoPipeline`` on the same tiny weights (official vs diffusers tree)."""

from __future__ import annotations

import pytest
import torch

from hyvideo.checkpoint.io import load_dit, load_vae, resolve_model_paths
from hyvideo.pipeline import HunyuanVideoPipeline, latent_shape, seeded_noise
from hyvideo.checkpoint.text import load_clip_text_encoder, load_llm_text_encoder
from hyvideo.text.templates import PROMPT_TEMPLATE

PROMPTS = ["A cat walks on the grass, realistic style.", "A red car drives along a coastal road at sunset."]
H, W, T = 64, 48, 9  # non-square


def _ours(base) -> HunyuanVideoPipeline:
    paths = resolve_model_paths(base)
    return HunyuanVideoPipeline(load_dit(paths.dit, dtype=torch.float32), load_vae(paths.vae, dtype=torch.float32),
                                load_llm_text_encoder(paths.text_encoder, dtype=torch.float32),
                                load_clip_text_encoder(paths.text_encoder_2, dtype=torch.float32))


def test_two_step_frames_match_diffusers_pipeline(tiny_ckpts, tiny_ckpts_diffusers):
    from diffusers import HunyuanVideoPipeline as DiffusersPipeline

    ours = _ours(tiny_ckpts)
    theirs = DiffusersPipeline.from_pretrained(tiny_ckpts_diffusers, dtype=torch.float32)
    theirs.set_progress_bar_config(disable=True)
    noise = seeded_noise([3, 4], latent_shape(2, H, W, T))
    ref = theirs(PROMPTS, height=H, width=W, num_frames=T, num_inference_steps=2, guidance_scale=6.0,
                 latents=noise.clone(), output_type="pt", max_sequence_length=256,
                 prompt_template={"template": PROMPT_TEMPLATE["dit-llm-encode-video"]["template"],
                                  "crop_start": ours.text_encoder.crop_start}).frames  # [B, T, C, H, W]
    got = ours(PROMPTS, height=H, width=W, video_length=T, seeds=[3, 4], latents=noise.clone(), infer_steps=2,
               flow_shift=7.0, embedded_guidance_scale=6.0, vae_tiling=False, progress=False)
    assert got.shape == (2, 3, T, H, W)
    err = (got - ref.permute(0, 2, 1, 3, 4)).abs().max().item()
    print(f"pipeline max abs frame error vs diffusers: {err:.2e}")
    assert err <= 1e-3, f"max abs frame error vs diffusers {err:.2e}"
    assert got.std() > 1e-3  # a real video, not a constant


def test_diffusers_folder_loads_same_weights_as_official(tiny_ckpts, tiny_ckpts_diffusers):
    a, b = resolve_model_paths(tiny_ckpts), resolve_model_paths(tiny_ckpts_diffusers)
    assert (a.layout, b.layout) == ("official", "diffusers")
    for x, y in [(load_dit(a.dit), load_dit(b.dit)), (load_vae(a.vae), load_vae(b.vae))]:
        sx, sy = x.state_dict(), y.state_dict()
        assert sx.keys() == sy.keys()
        assert all(torch.equal(sx[k], sy[k]) for k in sx)
    ours, theirs = _ours(tiny_ckpts), _ours(tiny_ckpts_diffusers)
    ea, eb = (p.encode_text(PROMPTS, T) for p in (ours, theirs))
    for u, v in zip(ea, eb):
        torch.testing.assert_close(u, v, rtol=0, atol=0)


def test_seeded_noise_is_per_seed_and_batch_independent():
    shape = latent_shape(2, H, W, T)
    both = seeded_noise([5, 6], shape)
    assert shape == (2, 16, 3, 8, 6)
    assert torch.equal(both[1:], seeded_noise([6], (1, *shape[1:])))
    assert not torch.equal(both[0], both[1])


@pytest.mark.parametrize("kw, message", [
    (dict(video_length=8), r"not 4n\+1"), (dict(height=60), "multiples of 16"), (dict(prompts=[""]), "prompt is empty"),
])
def test_pipeline_rejects_bad_requests(kw, message):
    args = dict(prompts=PROMPTS[:1], height=H, width=W, video_length=T, seeds=[0]) | kw
    pipe = HunyuanVideoPipeline(None, None, None, None)  # validation happens before any model is touched
    with pytest.raises(ValueError, match=message):
        pipe(**args)
