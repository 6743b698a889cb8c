"""The HunyuanVideo-I2V text encoder (prompt + image through LLaVA) vs diffusers' I2V ``encode_prompt``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hyvideo.checkpoint.text import load_clip_text_encoder, load_llava_i2v_text_encoder
from hyvideo.text.llava_i2v import default_image_embed_interleave

PROMPTS = ["A cat walks on the grass, realistic style.", "A red car."]  # different lengths: padded masks
REL_TOL = 1e-5


def _images(n=2, sizes=((40, 64), (70, 50))):
    rng = np.random.default_rng(0)
    return [Image.fromarray((rng.random((h, w, 3)) * 255).astype("uint8")) for h, w in sizes[:n]]


def _diffusers_pipe(root):
    from diffusers import HunyuanVideoImageToVideoPipeline

    pipe = HunyuanVideoImageToVideoPipeline.from_pretrained(root, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _template(enc) -> dict:
    """Our template numbers for the tiny tokenizer / vision tower, in diffusers' prompt_template format."""
    return {"template": enc.template, "crop_start": enc.crop_start, "image_emb_start": enc.image_emb_start,
            "image_emb_end": enc.image_emb_start + enc.image_emb_len, "image_emb_len": enc.image_emb_len}


@pytest.mark.parametrize("condition_type", ["token_replace", "latent_concat"])
def test_states_and_masks_match_diffusers_encode_prompt(tiny_i2v_tree, condition_type):
    interleave = default_image_embed_interleave(condition_type)
    enc = load_llava_i2v_text_encoder(tiny_i2v_tree("token_replace"), dtype=torch.float32,
                                      image_embed_interleave=interleave)
    clip = load_clip_text_encoder(tiny_i2v_tree("token_replace"), dtype=torch.float32)
    theirs = _diffusers_pipe(tiny_i2v_tree("token_replace", "diffusers"))
    images = _images()
    long_prompt = " ".join(["a small blue boat sails across a calm lake"] * 40)  # truncated: no assistant header
    states, mask = enc(PROMPTS + [long_prompt], images + images[:1])
    pooled = clip(PROMPTS + [long_prompt])
    assert states.shape[1] == enc.image_emb_len // interleave + enc.text_len - 4
    for i, (prompt, image) in enumerate(zip(PROMPTS + [long_prompt], images + images[:1])):
        ref, ref_pooled, ref_mask = theirs.encode_prompt(image=image, prompt=prompt, prompt_template=_template(enc),
                                                         device="cpu", image_embed_interleave=interleave)
        rel = ((states[i] - ref[0]).abs().max() / ref.abs().max()).item()
        print(f"{condition_type} prompt {i}: text states max relative error vs diffusers {rel:.2e}")
        assert rel <= REL_TOL
        assert torch.equal(mask[i], ref_mask[0].bool())
        torch.testing.assert_close(pooled[i], ref_pooled[0], rtol=1e-5, atol=1e-6)
    assert mask[0].sum() > mask[1].sum()  # the longer prompt keeps more tokens
    assert bool(mask[2].all())  # truncated: every text token is a prompt token
    assert bool(mask[:, : enc.image_emb_len // interleave].all())  # image tokens always attend


def test_official_and_diffusers_layouts_give_the_same_states(tiny_i2v_tree):
    a = load_llava_i2v_text_encoder(tiny_i2v_tree("token_replace"), dtype=torch.float32)
    b = load_llava_i2v_text_encoder(tiny_i2v_tree("token_replace", "diffusers") / "text_encoder", dtype=torch.float32)
    images = _images()
    for x, y in zip(a(PROMPTS, images), b(PROMPTS, images)):
        assert torch.equal(x, y)


def test_the_image_changes_the_states_and_black_differs_from_the_image(tiny_i2v_tree):
    enc = load_llava_i2v_text_encoder(tiny_i2v_tree("token_replace"), dtype=torch.float32)
    img = _images(1)[0]
    black = Image.new("RGB", img.size, 0)
    s1, _ = enc(PROMPTS[:1], [img])
    s2, _ = enc(PROMPTS[:1], [black])
    assert (s1 - s2).abs().max() > 1e-3


def test_bad_inputs(tiny_i2v_tree, tmp_path):
    enc = load_llava_i2v_text_encoder(tiny_i2v_tree("token_replace"), dtype=torch.float32)
    with pytest.raises(ValueError, match="got 1 images for 2 prompts"):
        enc(PROMPTS, _images(1))
    with pytest.raises(ValueError, match="one '<image>' token"):
        enc(["a cat <image> walks"], _images(1))
    with pytest.raises(ValueError, match="empty"):
        enc([" "], _images(1))
    # a text-only encoder folder is refused with a clear message
    from hyvideo.testing import tiny_text

    tiny_text.save_tiny_llm(tmp_path / "text_encoder")
    with pytest.raises(ValueError, match="text-only .* needs the full LLaVA"):
        load_llava_i2v_text_encoder(tmp_path / "text_encoder")
