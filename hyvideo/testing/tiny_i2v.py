"""A tiny, offline HunyuanVideo-I2V text encoder: ``LlavaForConditionalGeneration`` + tokenizer + image processor.

The layout of the official ``ckpts/text_encoder_i2v`` (``xtuner/llava-llama-3-8b-v1_1-transformers``: the full
LLaVA with its tokenizer and ``preprocessor_config.json`` in one folder), in well under a megabyte: a 2-layer
CLIP vision tower on 32 px images (8 px patches, so 16 image features instead of 576), the projector, and the
tiny Llama of :mod:`hyvideo.testing.tiny_text`. The tokenizer is trained on the text-to-video corpus plus the
I2V templates and knows ``<image>`` (LLaVA's image token) and ``<|pad|>``.
"""

from __future__ import annotations

from pathlib import Path

from hyvideo.testing import tiny_text
from hyvideo.text.templates import PROMPT_TEMPLATE_I2V

IMAGE_TOKEN = "<image>"
TINY_IMAGE_SIZE = 32  # px, the CLIP image processor's crop (336 in the release)
TINY_PATCH = 8  # -> (32 / 8)^2 = 16 image features


def build_llava_i2v_tokenizer():
    """The tiny Llama-3-style tokenizer with the I2V templates in its corpus and ``<image>`` as a special token."""
    raw = [t["template"] for t in PROMPT_TEMPLATE_I2V.values()]
    filled = [t["template"].format(c) for t in PROMPT_TEMPLATE_I2V.values() for c in tiny_text._CAPTIONS[:3]]
    return tiny_text.build_llama_tokenizer(extra_corpus=(*raw, *filled), extra_special_tokens=(IMAGE_TOKEN,))


def tiny_image_processor():
    """``CLIPImageProcessor`` with the release's settings (bicubic shortest-side resize, centre crop, CLIP mean /
    std) at 32 px; the PIL backend (``CLIPImageProcessorPil`` in transformers 5, which needs no torchvision)."""
    import transformers

    cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    return cls(size={"shortest_edge": TINY_IMAGE_SIZE}, crop_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE})


def build_tiny_llava_i2v(tokenizer, *, seed: int = tiny_text.TINY_SEED):
    """A random tiny ``LlavaForConditionalGeneration`` whose language model is :func:`tiny_text.build_tiny_llm`'s.

    Returns:
        The model in float32 and eval mode; ``config.image_token_index`` is ``<image>``'s id, ``pad_token_id``
        the tokenizer's pad id (as in the xtuner checkpoint).
    """
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration

    llm = tiny_text.build_tiny_llm(tokenizer, seed=seed)
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                              image_size=TINY_IMAGE_SIZE, patch_size=TINY_PATCH, projection_dim=16)
    config = LlavaConfig(vision_config=vision, text_config=llm.config,
                         image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                         image_seq_length=(TINY_IMAGE_SIZE // TINY_PATCH) ** 2, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=False)
    with tiny_text._seeded(seed + 1):
        llava = LlavaForConditionalGeneration(config)
    llava.get_decoder().load_state_dict(llm.state_dict())
    return llava.eval()


def save_tiny_llava_i2v(directory, *, seed: int = tiny_text.TINY_SEED, split: bool = False) -> Path:
    """Write the tiny I2V text encoder.

    Args:
        directory: output folder (created).
        seed: weight seed.
        split: diffusers layout: ``directory`` is a model tree root that gets ``text_encoder/`` (the LLaVA),
            ``tokenizer/`` and ``image_processor/``; otherwise everything goes into ``directory`` (official
            ``ckpts/text_encoder_i2v``).

    Returns:
        The folder written (``directory``).
    """
    directory = Path(directory)
    tokenizer = build_llava_i2v_tokenizer()
    model = build_tiny_llava_i2v(tokenizer, seed=seed)
    model_dir = directory / "text_encoder" if split else directory
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(directory / "tokenizer" if split else directory)
    tiny_image_processor().save_pretrained(directory / "image_processor" if split else directory)
    return directory
