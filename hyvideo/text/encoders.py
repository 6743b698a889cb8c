"""Text encoders of HunyuanVideo: a Llama-3 LLM (token states) and CLIP-L (pooled vector).

Implements the encoding of HV:hyvideo/text_encoder/__init__.py as driven by HV:hyvideo/inference.py, which
diffusers reproduces in ``HunyuanVideoPipeline._get_llama_prompt_embeds`` / ``_get_clip_prompt_embeds``
(DF:pipelines/hunyuan_video/pipeline_hunyuan_video.py):

- LLM: the stripped prompt is formatted into the chat template (video template when ``video_length > 1``,
  image template for a single frame), tokenized right-padded to ``max_length = text_len + crop_start_video``
  (351 for the release, in both modes), run with its attention mask, and ``hidden_states[-(skip + 1)]``
  (layer 30 of 32 for skip 2, without the final norm) is cropped to ``[crop_start:]``.
- CLIP: the plain prompt, padded/truncated to 77 tokens; ``pooler_output`` (the final-layer-norm state at the
  EOS token, before the text projection) is the DiT's ``text_states_2``.

Loading from the official ``ckpts/`` tree, a LLaVA checkpoint or a diffusers tree is
:mod:`hyvideo.checkpoint.text`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from .templates import DEFAULT_IMAGE_TEMPLATE, DEFAULT_VIDEO_TEMPLATE, PROMPT_TEMPLATE

logger = logging.getLogger(__name__)


@dataclass
class TextEmbeddings:
    """Text conditioning of the DiT.

    Attributes:
        states: LLM token states ``[B, L_txt, D_txt]`` (``txt`` input of the DiT), in the LLM's dtype.
        mask: ``[B, L_txt]`` bool, True = prompt token (the prompt plus the closing ``<|eot_id|>``).
        pooled: CLIP pooled vector ``[B, D_txt_2]`` (``text_states_2``, goes into ``vec`` only), or None.
    """

    states: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor | None = None

    def to(self, device=None, dtype: torch.dtype | None = None) -> "TextEmbeddings":
        """Moves the tensors; ``dtype`` applies to ``states`` and ``pooled`` (the mask stays bool)."""
        pooled = None if self.pooled is None else self.pooled.to(device=device, dtype=dtype)
        return TextEmbeddings(self.states.to(device=device, dtype=dtype), self.mask.to(device=device), pooled)


def _as_prompt_list(prompts: str | Sequence[str], allow_empty: bool) -> list[str]:
    """Validates prompts and strips surrounding whitespace (HV strips the prompt before templating)."""
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts:
        raise ValueError("No prompts given: expected a string or a non-empty list of strings.")
    out = []
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"Prompt #{i} is a {type(p).__name__}, expected str.")
        p = p.strip()
        if not p and not allow_empty:
            raise ValueError(
                f"Prompt #{i} is empty (or only whitespace). Pass a caption, or NEGATIVE_PROMPT for an "
                "unconditional branch; use allow_empty=True to encode the empty string on purpose."
            )
        out.append(p)
    return out


def _resolve_template(template: str | Mapping) -> dict:
    """Returns ``{"template": str, "crop_start": int | None}`` for a template name or dict."""
    if isinstance(template, str):
        if template not in PROMPT_TEMPLATE:
            raise ValueError(f"Unknown prompt template {template!r}; known: {sorted(PROMPT_TEMPLATE)}.")
        template = PROMPT_TEMPLATE[template]
    text = template["template"]
    if text.count("{}") != 1:
        raise ValueError(f"A prompt template needs exactly one '{{}}' placeholder, got: {text!r}")
    return {"template": text, "crop_start": template.get("crop_start")}


def compute_crop_start(tokenizer, template: str | Mapping) -> int:
    """Counts the tokens of a template's prefix before ``{}``, BOS included.

    This is the number of leading template tokens that the LLM encoder crops away. With the Llama-3 tokenizer
    of the release it gives 95 for ``"dit-llm-encode-video"`` and 36 for ``"dit-llm-encode"``
    (HV:hyvideo/constants.py). diffusers computes ``len(tokenize(template)) - 2`` instead (DF
    ``_get_llama_prompt_embeds``), which is the same number when ``{}`` is a single token, as it is for
    Llama-3 and for :func:`hyvideo.testing.tiny_text.build_llama_tokenizer`. The prefix ends with ``\\n\\n``, which
    Llama-3's pre-tokenizer always splits off, so the prefix tokens are exactly the leading tokens of any
    formatted prompt.

    Args:
        tokenizer: A Hugging Face tokenizer that adds BOS itself (as Llama-3's does).
        template: A template name of ``PROMPT_TEMPLATE`` or a dict with a ``"template"`` string.

    Returns:
        The crop start (number of tokens).

    Raises:
        ValueError: If the template is unknown or does not hold exactly one ``{}``.
    """
    prefix = _resolve_template(template)["template"].split("{}")[0]
    return len(tokenizer(prefix, add_special_tokens=True)["input_ids"])


class LLMTextEncoder(nn.Module):
    """Token-level text states from a LLaMA-family decoder (HunyuanVideo's MLLM text encoder).

    Args:
        model: A decoder that accepts ``input_ids``, ``attention_mask`` and ``output_hidden_states`` and has a
            final ``norm`` (``transformers.LlamaModel``).
        tokenizer: Its tokenizer; must add BOS itself and pad on the right (set here).
        template: Image template (name in ``PROMPT_TEMPLATE`` or dict), used when ``video_length == 1``.
        template_video: Video template, used when ``video_length > 1``; its crop start also sets ``max_length``.
        text_len: Number of text tokens kept for video prompts (``--text-len``, 256).
        hidden_state_skip_layer: Use ``hidden_states[-(skip + 1)]``; 2 (the release) is the 30th of 32 layers.
            None uses ``last_hidden_state`` (after the final norm).
        apply_final_norm: Apply the model's final RMSNorm to the selected hidden state (only when skip > 0;
            off in the release).
        crop_start: Crop of the video template; None computes it from the tokenizer
            (:func:`compute_crop_start`, 95 for Llama-3).
        crop_start_image: Crop of the image template; None computes it (36 for Llama-3).

    Raises:
        ValueError: On an unknown template or an out-of-range ``hidden_state_skip_layer``.

    Output length: ``max_length - crop`` = ``text_len`` for video prompts, and ``text_len + crop_start -
    crop_start_image`` (315 in the release) for image prompts, because HV sizes the tokenizer's
    ``max_length`` with the video crop in both modes.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        *,
        template: str | Mapping = DEFAULT_IMAGE_TEMPLATE,
        template_video: str | Mapping = DEFAULT_VIDEO_TEMPLATE,
        text_len: int = 256,
        hidden_state_skip_layer: int | None = 2,
        apply_final_norm: bool = False,
        crop_start: int | None = None,
        crop_start_image: int | None = None,
    ):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "right"
        num_layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
        if hidden_state_skip_layer is not None and (
            hidden_state_skip_layer < 0 or (num_layers is not None and hidden_state_skip_layer > num_layers)
        ):
            raise ValueError(f"hidden_state_skip_layer must be in [0, {num_layers}], got {hidden_state_skip_layer}.")
        self.hidden_state_skip_layer = hidden_state_skip_layer
        self.apply_final_norm = apply_final_norm
        self.text_len = text_len
        self.template = self._with_crop(template, crop_start_image)
        self.template_video = self._with_crop(template_video, crop_start)
        self.max_length = text_len + self.template_video["crop_start"]

    def _with_crop(self, template: str | Mapping, crop_start: int | None) -> dict:
        """Resolves a template and fixes its crop start (explicit value, else computed from the tokenizer)."""
        resolved = _resolve_template(template)
        if crop_start is None:
            computed = compute_crop_start(self.tokenizer, resolved)
            if resolved["crop_start"] is not None and resolved["crop_start"] != computed:
                logger.warning(
                    "Template crop_start %d does not match this tokenizer (%d tokens before '{}'); using %d.",
                    resolved["crop_start"], computed, computed,
                )
            crop_start = computed
        return {"template": resolved["template"], "crop_start": int(crop_start)}

    @property
    def crop_start(self) -> int:
        """Crop of the video template (95 in the release)."""
        return self.template_video["crop_start"]

    @property
    def crop_start_image(self) -> int:
        """Crop of the image template (36 in the release)."""
        return self.template["crop_start"]

    @torch.no_grad()
    def forward(
        self, prompts: str | Sequence[str], video_length: int, *, allow_empty: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encodes prompts into LLM token states.

        Args:
            prompts: One prompt or a list of ``B`` prompts (stripped before templating).
            video_length: Frames of the video to generate; 1 selects the image template.
            allow_empty: Allow empty prompts (the template alone is encoded; the mask keeps one token).

        Returns:
            ``(states, mask)``: states ``[B, L_txt, D_txt]`` in the model's dtype and mask ``[B, L_txt]`` bool,
            with ``L_txt = text_len`` for video and ``max_length - crop_start_image`` for images.

        Raises:
            ValueError: On an empty prompt list or an empty prompt (unless ``allow_empty``).
            TypeError: If a prompt is not a string.
        """
        prompts = _as_prompt_list(prompts, allow_empty)
        template = self.template_video if video_length > 1 else self.template
        tokens = self.tokenizer(
            [template["template"].format(p) for p in prompts],
            max_length=self.max_length,
            padding="max_length",
            truncation=True,
            return_tensors="pt",
            return_attention_mask=True,
        )
        device = next(self.model.parameters()).device
        input_ids = tokens["input_ids"].to(device)
        mask = tokens["attention_mask"].to(device)
        out = self.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
        skip = self.hidden_state_skip_layer
        if skip is None:
            states = out.last_hidden_state
        else:
            states = out.hidden_states[-(skip + 1)]
            if skip > 0 and self.apply_final_norm:
                states = self.model.norm(states)
        crop = template["crop_start"]
        return states[:, crop:], mask[:, crop:].bool()

    encode = forward


class CLIPTextEncoder(nn.Module):
    """Pooled CLIP text vector (HunyuanVideo's ``text_encoder_2``, CLIP ViT-L/14: 768-d).

    Args:
        model: A ``transformers.CLIPTextModel``.
        tokenizer: Its ``CLIPTokenizer``.
        max_length: Token length, padding and truncation (``--text-len-2``, 77).
        use_attention_mask: Pass the padding mask to CLIP as HV does (diffusers does not; with causal attention
            and right padding the pooled output is the same).
    """

    def __init__(self, model: nn.Module, tokenizer, *, max_length: int = 77, use_attention_mask: bool = True):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.use_attention_mask = use_attention_mask

    @torch.no_grad()
    def forward(self, prompts: str | Sequence[str], *, allow_empty: bool = False) -> torch.Tensor:
        """Encodes prompts into CLIP pooled vectors.

        Args:
            prompts: One prompt or a list of ``B`` prompts (no template).
            allow_empty: Allow empty prompts.

        Returns:
            ``pooler_output`` ``[B, D_txt_2]`` in the model's dtype: the final-layer-norm state at the first EOS
            token, before the text projection.

        Raises:
            ValueError: On an empty prompt list or an empty prompt (unless ``allow_empty``).
            TypeError: If a prompt is not a string.
        """
        prompts = _as_prompt_list(prompts, allow_empty)
        tokens = self.tokenizer(
            prompts, max_length=self.max_length, padding="max_length", truncation=True, return_tensors="pt"
        )
        device = next(self.model.parameters()).device
        mask = tokens["attention_mask"].to(device) if self.use_attention_mask else None
        out = self.model(input_ids=tokens["input_ids"].to(device), attention_mask=mask)
        return out.pooler_output

    encode = forward

    @torch.no_grad()
    def token_states(self, prompts: str | Sequence[str], *, allow_empty: bool = False) -> tuple[torch.Tensor, ...]:
        """Per-token CLIP states, for the CLIP-only text conditioning ablation (paper Sec. 4.3's text-encoder
        comparison at nano scale; ``model.text_conditioning: clip`` in ``train_dit.py``).

        Returns:
            ``(states [B, max_length, D_txt_2], mask [B, max_length] bool, pooled [B, D_txt_2])``: the final
            layer-norm states (model dtype), the tokenizer's padding mask, and :meth:`forward`'s pooled vector.

        Raises:
            ValueError, TypeError: as :meth:`forward`.
        """
        prompts = _as_prompt_list(prompts, allow_empty)
        tokens = self.tokenizer(
            prompts, max_length=self.max_length, padding="max_length", truncation=True, return_tensors="pt"
        )
        device = next(self.model.parameters()).device
        mask = tokens["attention_mask"].to(device)
        out = self.model(input_ids=tokens["input_ids"].to(device), attention_mask=mask if self.use_attention_mask
                         else None)
        return out.last_hidden_state, mask.bool(), out.pooler_output


class CLIPTokenEncoder(nn.Module):
    """CLIP's per-token states in the place of the LLM's: the CLIP-only text conditioning of the paper's
    text-encoder ablation (Sec. 4.3), at nano scale (``model.text_conditioning: clip``). Same call as
    :class:`LLMTextEncoder`, so training and the pipeline take it as ``text_encoder``.

    Args:
        clip: The :class:`CLIPTextEncoder` whose states are used (the DiT's ``text_states_dim`` must equal its
            hidden size).
    """

    def __init__(self, clip: CLIPTextEncoder):
        super().__init__()
        self.clip = clip

    @torch.no_grad()
    def forward(self, prompts: str | Sequence[str], video_length: int, *, allow_empty: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(states [B, 77, D_txt_2], mask [B, 77] bool)``; ``video_length`` is unused (CLIP has no template).

        Raises:
            ValueError, TypeError: as :meth:`CLIPTextEncoder.forward`.
        """
        states, mask, _ = self.clip.token_states(prompts, allow_empty=allow_empty)
        return states, mask

    encode = forward


def encode_prompts(
    llm: LLMTextEncoder,
    clip: CLIPTextEncoder | None,
    prompts: str | Sequence[str],
    video_length: int,
    *,
    allow_empty: bool = False,
) -> TextEmbeddings:
    """Encodes prompts with both text encoders.

    Args:
        llm: The LLM encoder (token states and mask).
        clip: The CLIP encoder (pooled vector), or None to leave ``pooled`` empty.
        prompts: One prompt or a list of ``B`` prompts.
        video_length: Frames to generate; 1 selects the image template.
        allow_empty: Allow empty prompts.

    Returns:
        ``TextEmbeddings`` with states ``[B, L_txt, D_txt]``, mask ``[B, L_txt]`` bool, pooled ``[B, D_txt_2]``.

    Raises:
        ValueError: On an empty prompt (unless ``allow_empty``).
    """
    states, mask = llm(prompts, video_length, allow_empty=allow_empty)
    pooled = None if clip is None else clip(prompts, allow_empty=allow_empty)
    return TextEmbeddings(states, mask, pooled)


__all__ = ["TextEmbeddings", "LLMTextEncoder", "CLIPTextEncoder", "CLIPTokenEncoder", "compute_crop_start", "encode_prompts"]
