"""The CFG negative: the released negative prompt by default, the model card's own (the nano model's empty
caption, the unconditional its text dropout trained) when the tree has one."""

from __future__ import annotations

import json

import torch

from hyvideo.checkpoint.loader import load_pipeline
from hyvideo.text.templates import NEGATIVE_PROMPT

F32 = dict(dit_dtype=torch.float32, vae_dtype=torch.float32, text_dtype=torch.float32)
KW = dict(height=32, width=32, video_length=1, seeds=[0], infer_steps=2, cfg_scale=2.0, vae_tiling=False,
          progress=False, output_type="latent")


def _record_prompts(pipe) -> list[list[str]]:
    seen, encode = [], pipe.encode_text

    def spy(prompts, video_length, images=None, allow_empty=False):
        seen.append(list(prompts))
        return encode(prompts, video_length, images, allow_empty)

    pipe.encode_text = spy
    return seen


def test_negative_is_released_prompt_unless_model_or_call_sets_one(tiny_ckpts):
    pipe = load_pipeline(tiny_ckpts, log=lambda *_: None, **F32)
    assert pipe.default_negative_prompt is None  # no model card: the released negative prompt
    seen = _record_prompts(pipe)
    released = pipe(["a cat"], **KW)
    pipe.default_negative_prompt = ""  # what a nano card sets: the empty caption
    empty = pipe(["a cat"], **KW)
    given = pipe(["a cat"], negative_prompt="blurry", **KW)
    assert seen == [[NEGATIVE_PROMPT, "a cat"], ["", "a cat"], ["blurry", "a cat"]]
    assert torch.isfinite(empty).all()
    assert not torch.allclose(empty, released) and not torch.allclose(empty, given)


def _tree_with_card(tmp_path, tiny_ckpts, negative) -> str:
    tmp_path.mkdir()
    for child in tiny_ckpts.iterdir():
        (tmp_path / child.name).symlink_to(child)
    card = {"vocabulary": ["cat"], "trained": {"sizes": [[32, 32]]}, "sampling": {"negative_prompt": negative}}
    (tmp_path / "nano.json").write_text(json.dumps(card))
    return str(tmp_path)


def test_card_negative_prompt_becomes_the_pipeline_default(tmp_path, tiny_ckpts):
    lines = []
    pipe = load_pipeline(_tree_with_card(tmp_path / "a", tiny_ckpts, ""), log=lines.append, **F32)
    assert pipe.default_negative_prompt == ""
    assert sum("CFG negative prompt: ''" in line for line in lines) == 1
    pipe = load_pipeline(_tree_with_card(tmp_path / "b", tiny_ckpts, None), log=lines.append, **F32)
    assert pipe.default_negative_prompt is None


def test_shipped_nano_card_uses_the_empty_caption():
    from hyvideo.nano import NANO_TREE, read_card

    assert read_card(NANO_TREE)["sampling"]["negative_prompt"] == ""
