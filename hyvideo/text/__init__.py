"""Text encoders of HunyuanVideo: Llama-3 token states (LLM) and the CLIP-L pooled vector.

- ``templates``: the released prompt templates and their ``crop_start``.
- ``encoders``: ``LLMTextEncoder``, ``CLIPTextEncoder``, ``TextEmbeddings``, ``encode_prompts`` (their loaders
  are :mod:`hyvideo.checkpoint.text`).
- ``llava_i2v``: ``LlavaI2VTextEncoder``, HunyuanVideo-I2V's prompt + image encoder (LLaVA).

The encoder classes are imported lazily, so ``import hyvideo.text`` stays cheap.
"""

from .templates import NEGATIVE_PROMPT, NEGATIVE_PROMPT_I2V, PROMPT_TEMPLATE, PROMPT_TEMPLATE_I2V

_LAZY = {
    name: "hyvideo.text.encoders"
    for name in (
        "TextEmbeddings", "LLMTextEncoder", "CLIPTextEncoder", "compute_crop_start", "encode_prompts",
    )
}
_LAZY["LlavaI2VTextEncoder"] = "hyvideo.text.llava_i2v"

__all__ = ["PROMPT_TEMPLATE", "NEGATIVE_PROMPT", "PROMPT_TEMPLATE_I2V", "NEGATIVE_PROMPT_I2V", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hyvideo.text' has no attribute {name!r}")
