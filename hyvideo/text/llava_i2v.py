"""The image-to-video text encoder of HunyuanVideo-I2V: prompt and image through LLaVA (CLIP tower + projector + Llama).

Implements HVI2V:hyvideo/text_encoder/__init__.py ``TextEncoder.encode`` (``i2v_mode``) as diffusers reproduces it
in ``HunyuanVideoImageToVideoPipeline._get_llama_prompt_embeds`` (DF:pipelines/hunyuan_video/
pipeline_hunyuan_video_image2video.py):

1. The stripped prompt is put into the I2V video template, whose system turn starts with one ``<image>`` token, and
   tokenized right-padded to ``text_len + crop_start`` tokens.
2. The ``<image>`` token is expanded into ``image_emb_len`` image-token slots (the released code ran an older
   transformers LLaVA that expanded it inside the model; the attention mask then marks every non-pad token and
   the position ids count the unmasked tokens, as diffusers does), the image is preprocessed by the CLIP image
   processor (resize shortest side, centre crop, CLIP mean / std), and LLaVA's CLIP features (layer -2, class
   token dropped, projected) fill the slots.
3. ``hidden_states[-(skip + 1)]`` of the language model is cut into the image part (the ``image_emb_len`` slots,
   every ``image_embed_interleave``-th one kept when ``0 < interleave < 6``: 4 for token replace, 2 for latent
   concat) and the text part (from the prompt's first token, without the 4 tokens ``<|eot_id|>
   <|start_header_id|>assistant<|end_header_id|>``; the final ``\\n\\n`` and the padding stay, as released). The
   DiT gets ``[image part, text part]`` with mask ``[ones, prompt mask]``.

Loading from the official ``ckpts/text_encoder_i2v`` (the full ``xtuner/llava-llama-3-8b-v1_1-transformers``) or a
diffusers I2V tree is :func:`hyvideo.checkpoint.text.load_llava_i2v_text_encoder`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from .encoders import _as_prompt_list, compute_crop_start
from .templates import DEFAULT_VIDEO_TEMPLATE_I2V, PROMPT_TEMPLATE_I2V

ASSISTANT_HEADER_TOKENS = 4  # <|eot_id|> <|start_header_id|> assistant <|end_header_id|>, dropped before "\n\n"
END_HEADER = "<|end_header_id|>"
NUM_HEADERS = 3  # system, user, assistant: fewer in a row means the prompt was truncated


def default_image_embed_interleave(condition_type: str | None) -> int:
    """Released ``image_embed_interleave``: 2 for latent concat, 4 for token replace, 1 otherwise."""
    return {"latent_concat": 2, "token_replace": 4}.get(condition_type, 1)


def _image_emb_len(config) -> int:
    """Image features per image: CLIP patches ``(image_size / patch_size)^2`` (+1 for the ``"full"`` strategy)."""
    vision = config.vision_config
    return (vision.image_size // vision.patch_size) ** 2 + (config.vision_feature_select_strategy == "full")


class LlavaI2VTextEncoder(nn.Module):
    """Token states of a prompt read together with its reference image (HunyuanVideo-I2V's MLLM text encoder).

    Args:
        model: ``transformers.LlavaForConditionalGeneration`` (its ``model`` is run; the LM head is not needed).
        tokenizer: its Llama-3 tokenizer (holds ``<image>``); padding is set to the right.
        image_processor: its ``CLIPImageProcessor`` (336 px for the release).
        template: I2V template name of ``PROMPT_TEMPLATE_I2V`` or a dict with ``"template"``.
        text_len: text tokens kept (``--text-len``, 256).
        hidden_state_skip_layer: use ``hidden_states[-(skip + 1)]`` (2 in the release).
        image_embed_interleave: keep every n-th image feature (see :func:`default_image_embed_interleave`).
        crop_start: template tokens before ``{}`` with one ``<image>`` token; None computes it from the
            tokenizer (103 for Llama-3).

    Raises:
        ValueError: the template has no ``<image>`` token or no ``{}``, or the tokenizer does not know ``<image>``.

    Output length: ``image_emb_len / interleave`` image tokens (rounded up) + ``text_len - 4`` text tokens
    (144 + 252 for the released token-replace model).
    """

    def __init__(self, model: nn.Module, tokenizer, image_processor, *,
                 template: str | Mapping = DEFAULT_VIDEO_TEMPLATE_I2V, text_len: int = 256,
                 hidden_state_skip_layer: int = 2, image_embed_interleave: int = 4, crop_start: int | None = None):
        super().__init__()
        self.model, self.tokenizer, self.image_processor = model, tokenizer, image_processor
        self.tokenizer.padding_side = "right"
        template = PROMPT_TEMPLATE_I2V[template] if isinstance(template, str) else template
        if template["template"].count("{}") != 1 or "<image>" not in template["template"]:
            raise ValueError(f"an I2V template needs one '{{}}' and an '<image>' token, got {template['template']!r}")
        self.template = template["template"]
        self.text_len, self.hidden_state_skip_layer = text_len, hidden_state_skip_layer
        self.image_embed_interleave = image_embed_interleave
        self.crop_start = compute_crop_start(tokenizer, {"template": self.template}) if crop_start is None \
            else int(crop_start)
        self.max_length = text_len + self.crop_start
        config = model.config
        self.image_token_id = config.image_token_index
        self.pad_token_id = config.pad_token_id if getattr(config, "pad_token_id", None) is not None \
            else tokenizer.pad_token_id
        self.image_emb_len = _image_emb_len(config)
        prefix = tokenizer(self.template.split("{}")[0], add_special_tokens=True)["input_ids"]
        if self.image_token_id not in prefix:
            raise ValueError(f"the tokenizer does not turn '<image>' into LLaVA's image token {self.image_token_id}")
        self.image_emb_start = prefix.index(self.image_token_id)
        self.end_header_id = tokenizer.convert_tokens_to_ids(END_HEADER)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def expand_image_tokens(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[B, L]`` ids with one ``<image>`` at ``image_emb_start`` -> ids, attention mask and position ids
        ``[B, L + image_emb_len - 1]`` with ``image_emb_len`` image slots (mask = not padding).

        Raises:
            ValueError: a row does not hold exactly one ``<image>`` token at ``image_emb_start``.
        """
        s, n = self.image_emb_start, self.image_emb_len
        counts = (input_ids == self.image_token_id).sum(1)
        if not bool((counts == 1).all()) or not bool((input_ids[:, s] == self.image_token_id).all()):
            raise ValueError(f"each prompt must hold one '<image>' token at position {s}, got counts "
                             f"{counts.tolist()}; '<image>' may not appear in the prompt text")
        slots = input_ids.new_full((input_ids.shape[0], n), self.image_token_id)
        ids = torch.cat([input_ids[:, :s], slots, input_ids[:, s + 1:]], dim=1)
        mask = (ids != self.pad_token_id).long()
        positions = (mask.cumsum(-1) - 1).masked_fill_(mask == 0, 1)
        return ids, mask, positions

    def assistant_starts(self, input_ids: torch.Tensor) -> list[int]:
        """Index (unexpanded) of the ``\\n\\n`` after the assistant header per row; the row length if truncated."""
        starts = []
        for row in input_ids:
            heads = (row == self.end_header_id).nonzero().flatten()
            starts.append(int(heads[-1]) + 1 if len(heads) >= NUM_HEADERS else row.shape[0])
        return starts

    @torch.no_grad()
    def forward(self, prompts: str | Sequence[str], images: Sequence, *, allow_empty: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode prompts with their reference images.

        Args:
            prompts: one prompt or ``B`` prompts (stripped before templating).
            images: ``B`` RGB ``PIL.Image`` (any size: the image processor resizes and crops them), one per prompt.
            allow_empty: allow empty prompts (negative branches).

        Returns:
            ``(states, mask)``: states ``[B, L_img + L_txt, D_txt]`` in the model's dtype, mask ``[B, L_img + L_txt]``
            bool (image tokens always True).

        Raises:
            ValueError: empty prompts (unless ``allow_empty``), a prompt / image count mismatch.
        """
        prompts = _as_prompt_list(prompts, allow_empty)
        if len(images) != len(prompts):
            raise ValueError(f"got {len(images)} images for {len(prompts)} prompts; pass one image per prompt")
        tokens = self.tokenizer([self.template.format(p) for p in prompts], max_length=self.max_length,
                                padding="max_length", truncation=True, return_tensors="pt", return_attention_mask=True)
        device = next(self.model.parameters()).device
        input_ids, prompt_mask = tokens["input_ids"].to(device), tokens["attention_mask"].to(device)
        pixels = self.image_processor(list(images), return_tensors="pt")["pixel_values"].to(device, self.dtype)
        ids, mask, positions = self.expand_image_tokens(input_ids)
        llava = getattr(self.model, "model", self.model)  # LlavaModel: no LM head over every token
        out = llava(input_ids=ids, attention_mask=mask, position_ids=positions, pixel_values=pixels,
                    output_hidden_states=True, use_cache=False)
        hidden = out.hidden_states[-(self.hidden_state_skip_layer + 1)]
        return self.split_states(hidden, input_ids, prompt_mask)

    def split_states(self, hidden: torch.Tensor, input_ids: torch.Tensor, prompt_mask: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """LLM states of the expanded sequence ``[B, L + n - 1, D]`` -> ``[image part, text part]`` and its mask."""
        s, n, crop = self.image_emb_start, self.image_emb_len, self.crop_start
        texts, masks = [], []
        for i, a in enumerate(self.assistant_starts(input_ids)):
            # hidden is in expanded positions (+ n - 1 after the image), the prompt mask in token positions
            head_end = a + n - 1 - ASSISTANT_HEADER_TOKENS
            texts.append(torch.cat([hidden[i, crop + n - 1: head_end], hidden[i, a + n - 1:]]))
            masks.append(torch.cat([prompt_mask[i, crop: a - ASSISTANT_HEADER_TOKENS], prompt_mask[i, a:]]))
        image = hidden[:, s: s + n]
        k = self.image_embed_interleave
        if 0 < k < 6:  # the released range
            image = image[:, ::k]
        image_mask = torch.ones(image.shape[:2], dtype=torch.bool, device=image.device)
        states = torch.cat([image, torch.stack(texts)], dim=1)
        return states, torch.cat([image_mask, torch.stack(masks).bool()], dim=1)

    encode = forward


__all__ = ["LlavaI2VTextEncoder", "default_image_embed_interleave"]
