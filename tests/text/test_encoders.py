"""Prompt embeddings: parity with diffusers' ``HunyuanVideoPipeline.encode_prompt``, hidden-layer choice,
template crop, padding mask, CLIP truncation and prompt validation (spec section 4)."""

from __future__ import annotations

import pytest
import torch

from hyvideo.text.encoders import TextEmbeddings, encode_prompts
from hyvideo.checkpoint.text import load_clip_text_encoder, load_llm_text_encoder
from hyvideo.text.templates import PROMPT_TEMPLATE

ATOL_FP32 = 1e-5  # fp32, same weights and tokens: only kernel-order differences remain


# Layouts of the issue: (a) official ckpts/, (b) full LLaVA folder, (c) diffusers subfolders (sibling tokenizers).
LAYOUTS = {
    "official": lambda c: (c["llm"], c["clip"]),
    "llava": lambda c: (c["llava"], c["clip_full"]),
    "diffusers": lambda c: (c["diffusers"] / "text_encoder", c["diffusers"] / "text_encoder_2"),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("video_length", [33, 1])
def test_matches_diffusers_encode_prompt(df_pipe, tiny_ckpts, prompts, layout, video_length):
    """Video mode equals diffusers' default call. Image mode (image template) equals diffusers given the image
    template and ``max_sequence_length = 256 + 95 - 36``, because HV sizes the tokens with the video crop."""
    llm_path, clip_path = LAYOUTS[layout](tiny_ckpts)
    llm = load_llm_text_encoder(llm_path, dtype=torch.float32)
    clip = load_clip_text_encoder(clip_path, dtype=torch.float32)
    if video_length > 1:
        kwargs = {}
    else:
        kwargs = {"prompt_template": PROMPT_TEMPLATE["dit-llm-encode"], "max_sequence_length": 256 + 95 - 36}
    ref_states, ref_pooled, ref_mask = df_pipe.encode_prompt(prompts, device="cpu", dtype=torch.float32, **kwargs)
    emb = encode_prompts(llm, clip, prompts, video_length)
    assert emb.states.shape == ref_states.shape == (2, 256 if video_length > 1 else 315, 32)
    torch.testing.assert_close(emb.states, ref_states, rtol=0, atol=ATOL_FP32)
    assert emb.mask.shape == ref_mask.shape and torch.equal(emb.mask, ref_mask.bool())
    assert emb.mask.dtype == torch.bool and 0 < int(emb.mask[0].sum()) < int(emb.mask[1].sum()) < emb.mask.shape[1]
    torch.testing.assert_close(emb.pooled, ref_pooled, rtol=0, atol=ATOL_FP32)


@pytest.mark.parametrize("skip", [None, 0, 1, 2, 3])
def test_hidden_state_skip_layer_selects_layer(tiny_ckpts, llm, prompts, skip):
    enc = load_llm_text_encoder(tiny_ckpts["llm"], dtype=torch.float32, hidden_state_skip_layer=skip)
    states, _ = enc(prompts, 33)
    template = PROMPT_TEMPLATE["dit-llm-encode-video"]["template"]
    tokens = enc.tokenizer([template.format(p) for p in prompts], max_length=351, padding="max_length",
                           return_tensors="pt")
    with torch.no_grad():
        out = enc.model(**tokens, output_hidden_states=True)
    assert len(out.hidden_states) == 4 + 1  # embeddings + 4 tiny layers
    expected = out.last_hidden_state if skip is None else out.hidden_states[-(skip + 1)]
    torch.testing.assert_close(states, expected[:, 95:], rtol=0, atol=ATOL_FP32)
    if skip == 2:  # the release default: third-to-last hidden state
        torch.testing.assert_close(states, llm(prompts, 33)[0], rtol=0, atol=0)
    if skip not in (None, 0):  # a different layer really is a different tensor
        assert (states - out.last_hidden_state[:, 95:]).abs().max() > 1e-2


def test_apply_final_norm(tiny_ckpts, llm, prompts):
    enc = load_llm_text_encoder(tiny_ckpts["llm"], dtype=torch.float32, apply_final_norm=True)
    with torch.no_grad():
        expected = enc.model.norm(llm(prompts, 33)[0])
    torch.testing.assert_close(enc(prompts, 33)[0], expected, rtol=0, atol=ATOL_FP32)


def test_bad_skip_layer(tiny_ckpts):
    with pytest.raises(ValueError, match="hidden_state_skip_layer"):
        load_llm_text_encoder(tiny_ckpts["llm"], dtype=torch.float32, hidden_state_skip_layer=5)


@pytest.mark.parametrize("video_length, template_name, length", [(33, "dit-llm-encode-video", 256),
                                                                 (1, "dit-llm-encode", 315)])
def test_crop_removes_template_prefix_and_mask_is_right_padded(llm, prompts, video_length, template_name, length):
    states, mask = llm(prompts, video_length)
    assert states.shape == (2, length, 32) and mask.shape == (2, length) and mask.dtype == torch.bool
    tok = llm.tokenizer
    for i, prompt in enumerate(prompts):
        n_prompt = len(tok(prompt, add_special_tokens=False).input_ids)
        n_valid = int(mask[i].sum())
        assert n_valid == n_prompt + 1  # the prompt tokens and the closing <|eot_id|>, no template token
        assert mask[i, :n_valid].all() and not mask[i, n_valid:].any()  # 1 = token, right padding
    # The tokens kept after the crop are exactly the prompt's own tokens and <|eot_id|>.
    template = PROMPT_TEMPLATE[template_name]["template"]
    ids = tok(template.format(prompts[0])).input_ids
    crop = PROMPT_TEMPLATE[template_name]["crop_start"]
    assert ids[crop:] == tok(prompts[0], add_special_tokens=False).input_ids + [tok.convert_tokens_to_ids("<|eot_id|>")]


def test_padding_does_not_change_states(llm, prompts):
    """Batched (padded) and single encodings agree: padding is masked and right of every valid token."""
    batch_states, batch_mask = llm(prompts, 33)
    for i, prompt in enumerate(prompts):
        states, mask = llm(prompt, 33)
        n = int(mask.sum())
        torch.testing.assert_close(batch_states[i, :n], states[0, :n], rtol=0, atol=ATOL_FP32)
        assert torch.equal(batch_mask[i], mask[0])


def test_prompt_is_stripped(llm, clip):
    torch.testing.assert_close(llm("  A cat walks.\n", 33)[0], llm("A cat walks.", 33)[0], rtol=0, atol=0)
    torch.testing.assert_close(clip(" A cat walks. "), clip("A cat walks."), rtol=0, atol=0)


def test_llm_truncates_long_prompts(llm):
    words = ("the quick brown fox jumps over the lazy dog " * 60).strip()
    states, mask = llm(words, 33)
    assert states.shape == (1, 256, 32) and bool(mask.all())


def test_clip_truncates_at_77_tokens(clip, df_pipe):
    tok = clip.tokenizer
    base = " ".join(["a red car drives through a rainy city street at night"] * 8)
    assert len(tok(base).input_ids) > 77
    tail_a, tail_b = base + " cat grass", base + " dog beach"
    pooled = clip([tail_a, tail_b, "a red car"])
    # Text beyond token 77 is dropped, text before it is not.
    torch.testing.assert_close(pooled[0], pooled[1], rtol=0, atol=0)
    assert (pooled[0] - pooled[2]).abs().max() > 1e-3
    ids = tok(tail_a, max_length=77, padding="max_length", truncation=True, return_tensors="pt").input_ids
    assert ids.shape == (1, 77) and ids[0, -1] == tok.eos_token_id
    with torch.no_grad():
        expected = clip.model(input_ids=ids).pooler_output
    torch.testing.assert_close(pooled[:1], expected, rtol=0, atol=ATOL_FP32)
    ref = df_pipe._get_clip_prompt_embeds([tail_a], device="cpu", dtype=torch.float32)
    torch.testing.assert_close(pooled[:1], ref, rtol=0, atol=ATOL_FP32)


@pytest.mark.parametrize("bad, error", [("", ValueError), ("   \n", ValueError), ([], ValueError),
                                        (["ok", ""], ValueError), ([3], TypeError)])
def test_bad_prompts(llm, clip, bad, error):
    with pytest.raises(error, match="[Pp]rompt"):
        llm(bad, 33)
    with pytest.raises(error, match="[Pp]rompt"):
        clip(bad)
    with pytest.raises(error):
        encode_prompts(llm, clip, bad, 33)


def test_allow_empty_encodes_template_only(llm, clip):
    emb = encode_prompts(llm, clip, "", 33, allow_empty=True)
    assert int(emb.mask.sum()) == 1  # only the closing <|eot_id|>
    assert emb.pooled.shape == (1, 32) and torch.isfinite(emb.states).all()


def test_text_embeddings_to(llm, clip, prompts):
    emb = encode_prompts(llm, clip, prompts, 33).to(dtype=torch.bfloat16)
    assert isinstance(emb, TextEmbeddings)
    assert emb.states.dtype == emb.pooled.dtype == torch.bfloat16 and emb.mask.dtype == torch.bool
    assert encode_prompts(llm, None, prompts, 33).pooled is None


def test_unknown_template(tiny_ckpts):
    with pytest.raises(ValueError, match="Unknown prompt template"):
        load_llm_text_encoder(tiny_ckpts["llm"], template_video="dit-llm-encode-audio")
