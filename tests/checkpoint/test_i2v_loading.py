"""HunyuanVideo-I2V trees: official (with and without config.json) and diffusers load the same weights strictly."""

from __future__ import annotations

import shutil

import pytest
import torch

from hyvideo.checkpoint.io import dit_config_for, load_dit, load_vae, resolve_model_paths
from hyvideo.checkpoint.loader import has_vision_tower, load_pipeline

FP32 = dict(dit_dtype=torch.float32, vae_dtype=torch.float32, text_dtype=torch.float32, log=lambda *a: None)


@pytest.mark.parametrize("condition_type", ["token_replace", "latent_concat"])
def test_official_and_diffusers_i2v_trees_load_the_same_models(tiny_i2v_tree, condition_type):
    a = resolve_model_paths(tiny_i2v_tree(condition_type), i2v=True)
    b = resolve_model_paths(tiny_i2v_tree(condition_type, "diffusers"), i2v=True)
    assert "hunyuan-video-i2v-720p" in str(a.dit) and a.text_encoder.name == "text_encoder_i2v"
    assert has_vision_tower(a.text_encoder) and has_vision_tower(b.text_encoder)  # the LLaVA reads the image
    for x, y in [(load_dit(a.dit), load_dit(b.dit)), (load_vae(a.vae), load_vae(b.vae))]:
        sx, sy = x.state_dict(), y.state_dict()
        assert sx.keys() == sy.keys() and all(torch.equal(sx[k], sy[k]) for k in sx)
    assert load_dit(a.dit).i2v_condition_type == load_dit(b.dit).i2v_condition_type == condition_type
    pa, pb = (load_pipeline(t, i2v=True, **FP32) for t in (tiny_i2v_tree(condition_type),
                                                           tiny_i2v_tree(condition_type, "diffusers")))
    assert pa.text_encoder.image_embed_interleave == {"token_replace": 4, "latent_concat": 2}[condition_type]
    from PIL import Image

    image = Image.new("RGB", (40, 30), (200, 30, 30))
    for u, v in zip(pa.encode_text(["a red square"], 9, [image]), pb.encode_text(["a red square"], 9, [image])):
        assert torch.equal(u, v)


@pytest.mark.parametrize("condition_type", ["token_replace", "latent_concat"])
def test_a_config_less_released_file_is_recognised(tiny_i2v_tree, tmp_path, condition_type):
    tree = tmp_path / "ckpts"
    shutil.copytree(tiny_i2v_tree(condition_type), tree)
    dit_file = resolve_model_paths(tree, i2v=True).dit
    (dit_file.parent / "config.json").unlink()  # as released: no config beside the weights
    cfg = dit_config_for(dit_file, "tiny")
    assert cfg["i2v_condition_type"] == condition_type and cfg["guidance_embed"] is True
    assert cfg["in_channels"] == {"token_replace": 16, "latent_concat": 33}[condition_type]
    assert load_dit(dit_file, model="tiny").i2v_condition_type == condition_type  # strict load


def test_t2v_request_on_an_i2v_only_tree_finds_the_i2v_weights(tiny_i2v_tree):
    paths = resolve_model_paths(tiny_i2v_tree(), i2v=False)  # the caller then names the condition type it found
    assert dit_config_for(paths.dit)["i2v_condition_type"] == "token_replace"
