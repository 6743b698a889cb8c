"""Structured captions: the paper's JSON schema, a validator, a VLM captioner and the prompt renderer.

HunyuanVideo (arXiv 2412.03603, "Structured captioning"): an in-house VLM writes a JSON caption with a short
description, a dense description, background, style, shot type, lighting and atmosphere; camera movement
comes from a separate classifier. Training prompts are synthesised from the fields with random dropout and
permutation. The key spellings are ours (the paper does not publish them) and are shared with the training
reader, :data:`hyvideo.data.manifest.STRUCTURED_KEYS`.
"""

from __future__ import annotations

import functools
import json
import random
import re

import numpy as np

from hyvideo.data.manifest import STRUCTURED_KEYS, caption_text

REQUIRED_KEYS = ("short_description", "dense_description")
# Allowed values of the closed-vocabulary fields (free text elsewhere).
SHOT_TYPES = ("extreme close-up", "close-up", "medium close-up", "medium shot", "medium long shot",
              "long shot", "extreme long shot", "aerial shot", "over-the-shoulder shot", "unknown")

CAPTION_PROMPT = (
    "Describe this video as one JSON object with exactly these string fields: "
    '"short_description" (one sentence, main subject and action), "dense_description" (3-5 sentences: '
    'subjects, actions, scene transitions), "background", "style" (e.g. documentary, cinematic, anime), '
    f'"shot_type" (one of: {", ".join(SHOT_TYPES)}), "lighting", "atmosphere". Answer with JSON only.'
)


def validate_caption(caption: dict) -> dict:
    """Check a structured caption and return it with stripped strings.

    Rules: keys are from ``STRUCTURED_KEYS``; every value is a string; ``short_description`` and
    ``dense_description`` are non-empty; ``shot_type``, when present, is one of :data:`SHOT_TYPES`;
    ``camera_movement``, when present, is one of ``camera.CAMERA_CLASSES`` written with spaces.

    Raises:
        ValueError: with every problem found, listed.
    """
    from hyvideo.data.curation.camera import CAMERA_CLASSES  # noqa: PLC0415

    if not isinstance(caption, dict):
        raise ValueError(f"a structured caption must be a JSON object, got {type(caption).__name__}")
    errors = [f"unknown key {k!r} (allowed: {', '.join(STRUCTURED_KEYS)})" for k in caption if k not in STRUCTURED_KEYS]
    errors += [f"{k!r} must be a string, got {type(v).__name__}" for k, v in caption.items() if not isinstance(v, str)]
    out = {k: v.strip() for k, v in caption.items() if isinstance(v, str)}
    errors += [f"{k!r} is required and must be non-empty" for k in REQUIRED_KEYS if not out.get(k)]
    if out.get("shot_type") and out["shot_type"].lower() not in SHOT_TYPES:
        errors.append(f"shot_type {out['shot_type']!r} is not one of {SHOT_TYPES}")
    cams = {c.replace("_", " ") for c in CAMERA_CLASSES}
    if out.get("camera_movement") and out["camera_movement"] not in cams:
        errors.append(f"camera_movement {out['camera_movement']!r} is not one of {sorted(cams)}")
    if errors:
        raise ValueError("invalid structured caption: " + "; ".join(errors))
    return out


def parse_caption(text: str) -> dict:
    """Extract and validate the first JSON object in a model's answer.

    Raises:
        ValueError: no JSON object, malformed JSON, or a caption that fails :func:`validate_caption`.
    """
    m = re.search(r"\{.*\}", text, re.DOTALL)
    if m is None:
        raise ValueError(f"no JSON object in captioner output: {text[:200]!r}")
    try:
        obj = json.loads(m.group(0))
    except json.JSONDecodeError as e:
        raise ValueError(f"captioner output is not valid JSON ({e}): {m.group(0)[:200]!r}") from e
    if isinstance(obj, dict):
        obj = {k: v for k, v in obj.items() if k != "camera_movement"}  # camera comes from the classifier
    return validate_caption(obj)


def add_camera_movement(caption: dict, label: str, confidence: float, min_confidence: float) -> dict:
    """Validate ``caption`` and add the classifier's camera movement when its confidence >= ``min_confidence``.

    Raises:
        ValueError: ``caption`` fails :func:`validate_caption`.
    """
    if confidence < min_confidence:
        return validate_caption(caption)
    return validate_caption({**caption, "camera_movement": label.replace("_", " ")})


def render_caption(caption: dict | str, rng: random.Random | None = None, drop_p: float = 0.3) -> str:
    """Training prompt from a structured caption: fields after the first present description are dropped
    with probability ``drop_p`` and shuffled (paper's caption synthesis); deterministic per ``rng`` state.

    Strings pass through. Without ``rng`` all fields are kept in schema order.
    """
    if isinstance(caption, str):
        return caption
    return caption_text(validate_caption(caption), rng, drop_p)


class VLMCaptioner:
    """Structured captions from a local vision-language model through ``transformers``.

    Loads ``AutoProcessor`` + ``AutoModelForImageTextToText`` from ``model_path`` with
    ``local_files_only=True`` (no download), shows the clip's frames as images with
    :data:`CAPTION_PROMPT`, and parses the JSON answer with :func:`parse_caption`.

    Args:
        model_path: directory of a chat VLM (e.g. a Qwen2-VL / LLaVA-style checkpoint).
        max_new_tokens: generation budget.

    Raises:
        OSError: the directory does not hold a loadable model.
    """

    def __init__(self, model_path: str, max_new_tokens: int = 384):
        from transformers import AutoModelForImageTextToText, AutoProcessor  # noqa: PLC0415

        self.processor = AutoProcessor.from_pretrained(model_path, local_files_only=True)
        self.model = AutoModelForImageTextToText.from_pretrained(model_path, local_files_only=True).eval()
        self.max_new_tokens = max_new_tokens

    def __call__(self, frames_bgr: list[np.ndarray], **context) -> dict:
        """Structured caption of ``[H, W, 3]`` uint8 BGR frames.

        Raises:
            ValueError: the answer is not a valid structured caption.
        """
        import torch  # noqa: PLC0415
        from PIL import Image  # noqa: PLC0415

        images = [Image.fromarray(np.ascontiguousarray(f[..., ::-1])) for f in frames_bgr]
        messages = [{"role": "user", "content": [*({"type": "image"} for _ in images),
                                                 {"type": "text", "text": CAPTION_PROMPT}]}]
        prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = self.processor(images=images, text=prompt, return_tensors="pt")
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        answer = self.processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        return parse_caption(answer)


@functools.lru_cache(maxsize=1)
def get_captioner(model_path: str):
    """One captioner per process and path (loading a VLM takes seconds to minutes).

    ``"attributes"`` is the nano data set's ground-truth captioner (``hyvideo.data.synthetic.captions``).
    """
    if model_path == "attributes":
        from hyvideo.data.synthetic.captions import AttributeCaptioner  # noqa: PLC0415

        return AttributeCaptioner()
    return VLMCaptioner(model_path)
