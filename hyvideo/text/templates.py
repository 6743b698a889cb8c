"""Prompt templates of the released HunyuanVideo text encoder (HV:hyvideo/constants.py).

The LLM sees the user prompt wrapped in a chat-style system instruction. Its hidden states for the template
prefix are cropped away afterwards (``crop_start`` tokens), so only the prompt tokens and the closing
``<|eot_id|>`` reach the DiT.

How ``crop_start`` was derived: it is the number of tokens of the template text *before* ``{}`` as produced by
the Llama-3 tokenizer of ``xtuner/llava-llama-3-8b-v1_1-transformers``, including the ``<|begin_of_text|>`` (BOS)
token that the tokenizer prepends on its own. diffusers computes the same number when ``crop_start`` is None:
tokenize the whole template (``{}`` included, no padding) and subtract 2 for the ``{}`` token and the final
``<|eot_id|>`` (DF:pipelines/hunyuan_video/pipeline_hunyuan_video.py ``_get_llama_prompt_embeds``). With the
Llama-3 tokenizer this gives 95 for the video template and 36 for the image template; other tokenizers give
other numbers, see :func:`hyvideo.text.encoders.compute_crop_start`.

The strings below are copied verbatim from the release, including the missing spaces between the numbered
items ("video.2.", "objects.3.") and the two real newlines after each ``<|end_header_id|>``. There is no
assistant header.
"""

from __future__ import annotations

# Image template (``--prompt-template dit-llm-encode``), used when the video has a single frame.
_IMAGE_TEMPLATE = (
    "<|start_header_id|>system<|end_header_id|>\n\n"
    "Describe the image by detailing the color, shape, size, texture, quantity, text, spatial relationships of "
    "the objects and background:<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
)

# Video template (``--prompt-template-video dit-llm-encode-video``); also DF's ``DEFAULT_PROMPT_TEMPLATE``.
_VIDEO_TEMPLATE = (
    "<|start_header_id|>system<|end_header_id|>\n\n"
    "Describe the video by detailing the following aspects: "
    "1. The main content and theme of the video."
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects."
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects."
    "4. background environment, light, style and atmosphere."
    "5. camera angles, movements, and transitions used in the video:<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
)

#: Released templates: name -> {"template": str with one ``{}``, "crop_start": int (Llama-3 token count)}.
PROMPT_TEMPLATE: dict[str, dict] = {
    "dit-llm-encode": {"template": _IMAGE_TEMPLATE, "crop_start": 36},
    "dit-llm-encode-video": {"template": _VIDEO_TEMPLATE, "crop_start": 95},
}

#: CLI defaults of the release (``--prompt-template`` / ``--prompt-template-video``).
DEFAULT_IMAGE_TEMPLATE = "dit-llm-encode"
DEFAULT_VIDEO_TEMPLATE = "dit-llm-encode-video"

#: Released default negative prompt (HV:hyvideo/constants.py ``NEGATIVE_PROMPT``).
NEGATIVE_PROMPT = (
    "Aerial view, aerial view, overexposed, low quality, deformation, a poor composition, bad hands, bad teeth, "
    "bad eyes, bad limbs, distortion"
)


# HunyuanVideo-I2V templates (HVI2V:hyvideo/constants.py): the system turn starts with the ``<image>`` placeholder,
# which the LLaVA text encoder expands into the image's CLIP patch features, and an assistant header closes the
# prompt. ``crop_start`` counts the template tokens before ``{}`` with the single ``<image>`` token (BOS included),
# as for the text-to-video templates (103 = 95 + "<image>", "\n", " according to the reference image" and the
# extra "\n\n"); ``image_emb_start`` / ``image_emb_end`` / ``image_emb_len`` locate the image features after
# expansion (576 = (336 / 14)^2 CLIP ViT-L/14-336 patches, class token dropped).
_IMAGE_TEMPLATE_I2V = (
    "<|start_header_id|>system<|end_header_id|>\n\n<image>\nDescribe the image by detailing the color, shape, size, "
    "texture, quantity, text, spatial relationships of the objects and background:<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
_VIDEO_TEMPLATE_I2V = (
    "<|start_header_id|>system<|end_header_id|>\n\n<image>\nDescribe the video by detailing the following aspects "
    "according to the reference image: "
    "1. The main content and theme of the video."
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects."
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects."
    "4. background environment, light, style and atmosphere."
    "5. camera angles, movements, and transitions used in the video:<|eot_id|>\n\n"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)

#: Released I2V templates (``--prompt-template dit-llm-encode-i2v``, ``--prompt-template-video
#: dit-llm-encode-video-i2v``); the numbers are for the Llama-3 tokenizer and CLIP ViT-L/14-336 of
#: ``xtuner/llava-llama-3-8b-v1_1-transformers`` (other tokenizers / towers: computed by the encoder).
PROMPT_TEMPLATE_I2V: dict[str, dict] = {
    "dit-llm-encode-i2v": {"template": _IMAGE_TEMPLATE_I2V, "crop_start": 36, "image_emb_start": 5,
                           "image_emb_end": 581, "image_emb_len": 576, "double_return_token_id": 271},
    "dit-llm-encode-video-i2v": {"template": _VIDEO_TEMPLATE_I2V, "crop_start": 103, "image_emb_start": 5,
                                 "image_emb_end": 581, "image_emb_len": 576, "double_return_token_id": 271},
}
DEFAULT_VIDEO_TEMPLATE_I2V = "dit-llm-encode-video-i2v"

#: Released default negative prompt of I2V sampling (HVI2V:hyvideo/constants.py ``NEGATIVE_PROMPT_I2V``).
NEGATIVE_PROMPT_I2V = "deformation, a poor composition and deformed video, bad teeth, bad eyes, bad limbs"
