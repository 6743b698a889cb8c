"""The released prompt templates, verbatim, and how crop_start follows from the tokenizer."""

from __future__ import annotations

import pytest

from hyvideo.text.templates import NEGATIVE_PROMPT, PROMPT_TEMPLATE


def test_template_names_and_crop_constants():
    assert set(PROMPT_TEMPLATE) == {"dit-llm-encode", "dit-llm-encode-video"}
    assert PROMPT_TEMPLATE["dit-llm-encode"]["crop_start"] == 36
    assert PROMPT_TEMPLATE["dit-llm-encode-video"]["crop_start"] == 95


def test_video_template_is_verbatim():
    t = PROMPT_TEMPLATE["dit-llm-encode-video"]["template"]
    assert t.startswith("<|start_header_id|>system<|end_header_id|>\n\nDescribe the video by detailing")
    # No space after each item's period (a quirk of the release).
    assert "1. The main content and theme of the video.2. The color, shape, size" in t
    assert "spatial relationships of the objects.3. Actions, events, behaviors temporal relationships" in t
    assert "movement changes of the objects.4. background environment, light, style and atmosphere.5. camera" in t
    assert t.endswith(
        "transitions used in the video:<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
    )
    assert t.count("\n") == 4 and "\\n" not in t and "assistant" not in t


def test_image_template_is_verbatim():
    t = PROMPT_TEMPLATE["dit-llm-encode"]["template"]
    assert t == (
        "<|start_header_id|>system<|end_header_id|>\n\nDescribe the image by detailing the color, shape, size, "
        "texture, quantity, text, spatial relationships of the objects and background:<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
    )


def test_matches_diffusers_default_template():
    pipe = pytest.importorskip("diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video")
    assert pipe.DEFAULT_PROMPT_TEMPLATE == PROMPT_TEMPLATE["dit-llm-encode-video"]


def test_negative_prompt():
    assert NEGATIVE_PROMPT == (
        "Aerial view, aerial view, overexposed, low quality, deformation, a poor composition, bad hands, "
        "bad teeth, bad eyes, bad limbs, distortion"
    )


def test_compute_crop_start_matches_diffusers_formula():
    """Our prefix count equals diffusers' ``len(tokenize(template)) - 2`` when ``{}`` is one token."""
    from hyvideo.text.encoders import compute_crop_start
    from hyvideo.testing.tiny_text import build_llama_tokenizer

    tok = build_llama_tokenizer()
    for name, entry in PROMPT_TEMPLATE.items():
        diffusers_formula = len(tok(entry["template"]).input_ids) - 2
        assert compute_crop_start(tok, name) == diffusers_formula
        # The tiny tokenizer happens to split the templates like Llama-3 does, one token per word.
        assert compute_crop_start(tok, entry) == entry["crop_start"]
    custom = {"template": "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"}
    # BOS, <|start_header_id|>, "user", <|end_header_id|>, "\n\n": 5 tokens, as diffusers' formula also says.
    assert compute_crop_start(tok, custom) == 5 == len(tok(custom["template"]).input_ids) - 2
    # Formatted prompts start with exactly the prefix tokens, and the prompt begins right after them.
    ids = tok(custom["template"].format("A cat.")).input_ids
    assert ids[:5] == tok(custom["template"].split("{}")[0]).input_ids
    assert tok.convert_ids_to_tokens(ids[5:]) == ["A", "Ġcat", ".", "<|eot_id|>"]


def test_compute_crop_start_rejects_bad_templates():
    from hyvideo.text.encoders import compute_crop_start
    from hyvideo.testing.tiny_text import build_llama_tokenizer

    tok = build_llama_tokenizer()
    with pytest.raises(ValueError, match="placeholder"):
        compute_crop_start(tok, {"template": "no placeholder"})
    with pytest.raises(ValueError, match="Unknown prompt template"):
        compute_crop_start(tok, "dit-llm-encode-audio")
