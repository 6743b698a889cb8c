"""Text encoders of HunyuanVideo: Llama-3 token states (LLM) and the CLIP-L pooled vector.

- ``templates``: the released prompt templates and their ``crop_start``.
- ``encoders``: ``LLMTextEncoder``, ``CLIPTextEncoder``, ``TextEmbeddings``, ``encode_prompts`` (their loaders
  are :mod:`hyvideo.checkpoint.text`).
- ``tiny``: offline tiny tokenizers and models for tests and tiny checkpoints.

The encoder classes are imported lazily, so ``import hyvideo.text`` stays cheap.
"""

from .templates import NEGATIVE_PROMPT, PROMPT_TEMPLATE

_LAZY = {
    name: "hyvideo.text.encoders"
    for name in (
        "TextEmbeddings", "LLMTextEncoder", "CLIPTextEncoder", "compute_crop_start", "encode_prompts",
    )
}

__all__ = ["PROMPT_TEMPLATE", "NEGATIVE_PROMPT", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hyvideo.text' has no attribute {name!r}")
