"""Loading the text encoders from every supported folder layout, and the errors on bad folders.

Every tiny folder holds the same weights, so each layout must reproduce the official layout's embeddings
exactly; a loader that silently picked a wrong tokenizer, a randomly initialised layer or the LLaVA vision tower
would change them.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from hyvideo.text.encoders import encode_prompts
from hyvideo.checkpoint.text import load_clip_text_encoder, load_llm_text_encoder

# (path key in tiny_ckpts, subfolder or None): LLM layouts.
LLM_LAYOUTS = {
    "official": ("llm", None),
    "ckpts_root": ("ckpts_root", None),
    "causal_lm": ("llm_causal", None),
    "llava_legacy_keys": ("llava", None),
    "llava_v5_keys": ("llava_v5", None),
    "llava_sharded": ("llava_sharded", None),
    "diffusers_root": ("diffusers", None),
    "diffusers_subfolder": ("diffusers", "text_encoder"),  # tokenizer from the sibling tokenizer/
}
CLIP_LAYOUTS = {
    "official": ("clip", None),
    "ckpts_root": ("ckpts_root", None),
    "full_clip_model": ("clip_full", None),
    "diffusers_root": ("diffusers", None),
    "diffusers_subfolder": ("diffusers", "text_encoder_2"),  # tokenizer from the sibling tokenizer_2/
}


def _path(tiny_ckpts, layout):
    key, sub = layout
    return tiny_ckpts[key] if sub is None else tiny_ckpts[key] / sub


@pytest.mark.parametrize("name", list(LLM_LAYOUTS))
def test_llm_layouts_give_identical_embeddings(name, tiny_ckpts, llm, prompts):
    from transformers import LlamaModel

    enc = load_llm_text_encoder(_path(tiny_ckpts, LLM_LAYOUTS[name]), dtype=torch.float32)
    assert type(enc.model) is LlamaModel  # a LLaVA folder gives its language model only
    assert enc.crop_start == 95 and enc.crop_start_image == 36
    for video_length in (1, 33):
        ref_states, ref_mask = llm(prompts, video_length)
        states, mask = enc(prompts, video_length)
        torch.testing.assert_close(states, ref_states, rtol=0, atol=0)
        assert torch.equal(mask, ref_mask)


@pytest.mark.parametrize("name", list(CLIP_LAYOUTS))
def test_clip_layouts_give_identical_pooled(name, tiny_ckpts, clip, prompts):
    from transformers import CLIPTextModel

    enc = load_clip_text_encoder(_path(tiny_ckpts, CLIP_LAYOUTS[name]), dtype=torch.float32)
    assert isinstance(enc.model, CLIPTextModel)
    torch.testing.assert_close(enc(prompts), clip(prompts), rtol=0, atol=0)


def test_diffusers_subfolders_use_sibling_tokenizers(tiny_ckpts, tmp_path):
    """``resolve_model_paths`` hands ``base/text_encoder`` and ``base/text_encoder_2`` of a diffusers tree."""
    from hyvideo.checkpoint.io import resolve_model_paths

    root = shutil.copytree(tiny_ckpts["diffusers"], tmp_path / "tree")
    (root / "transformer").mkdir()  # only the text parts matter here; the resolver checks that the others exist
    (root / "vae").mkdir()
    paths = resolve_model_paths(root)
    assert paths.layout == "diffusers" and not (paths.text_encoder / "tokenizer.json").exists()
    llm_enc = load_llm_text_encoder(paths.text_encoder, dtype=torch.float32)
    clip_enc = load_clip_text_encoder(paths.text_encoder_2, dtype=torch.float32)
    assert llm_enc.tokenizer.name_or_path.rstrip("/").endswith("tokenizer")
    assert clip_enc.tokenizer.name_or_path.rstrip("/").endswith("tokenizer_2")
    emb = encode_prompts(llm_enc, clip_enc, "A cat walks on the grass.", video_length=5)
    assert emb.states.shape == (1, 256, 32) and emb.mask.shape == (1, 256) and emb.pooled.shape == (1, 32)


def test_dtype_argument(tiny_ckpts):
    enc = load_llm_text_encoder(tiny_ckpts["llava"], dtype=torch.bfloat16)
    states, mask = enc("A cat.", 5)
    assert states.dtype == torch.bfloat16 and mask.dtype == torch.bool
    assert load_clip_text_encoder(tiny_ckpts["clip"]).model.dtype == torch.float16  # the release's default


def test_missing_folder_names_the_path(tmp_path):
    missing = tmp_path / "no_such_ckpts"
    with pytest.raises(FileNotFoundError, match="no_such_ckpts"):
        load_llm_text_encoder(missing)
    with pytest.raises(FileNotFoundError, match="no_such_ckpts"):
        load_clip_text_encoder(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty[/\\]text_encoder[/\\]config\.json"):
        load_llm_text_encoder(empty)
    with pytest.raises(FileNotFoundError, match=r"empty[/\\]text_encoder_2[/\\]config\.json"):
        load_clip_text_encoder(empty)


def test_missing_tokenizer_names_every_path_tried(tiny_ckpts, tmp_path):
    """A diffusers ``text_encoder/`` copied without its sibling ``tokenizer/``."""
    model_dir = shutil.copytree(tiny_ckpts["diffusers"] / "text_encoder", tmp_path / "tree" / "text_encoder")
    with pytest.raises(FileNotFoundError) as err:
        load_llm_text_encoder(model_dir)
    assert str(model_dir) in str(err.value) and str(tmp_path / "tree" / "tokenizer") in str(err.value)
    clip_dir = shutil.copytree(tiny_ckpts["diffusers"] / "text_encoder_2", tmp_path / "tree" / "text_encoder_2")
    with pytest.raises(FileNotFoundError, match="tokenizer_2"):
        load_clip_text_encoder(clip_dir)


def test_llava_without_language_model_weights(tiny_ckpts, tmp_path):
    folder = shutil.copytree(tiny_ckpts["llava"], tmp_path / "llava_no_weights")
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="language-model weights"):
        load_llm_text_encoder(folder)


def test_llava_pytorch_bin_checkpoint(tiny_ckpts, llm, prompts, tmp_path):
    """A LLaVA folder with ``pytorch_model.bin`` instead of safetensors gives the same language model."""
    from safetensors.torch import load_file

    folder = shutil.copytree(tiny_ckpts["llava"], tmp_path / "llava_bin")
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    enc = load_llm_text_encoder(folder, dtype=torch.float32)
    torch.testing.assert_close(enc(prompts, 33)[0], llm(prompts, 33)[0], rtol=0, atol=0)
